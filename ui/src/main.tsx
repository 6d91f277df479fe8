import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { isAppError } from "./api";
import { App } from "./App";
import { CrashScreen } from "./components/Crash";
import "./styles.css";

// Reads are local and cheap; freshness comes from store events, not timers.
// A read the engine says may work again (the local database busy for a
// moment) is tried again a few times: with no timer to refresh it, a failed
// read would otherwise stay failed until the next change arrives.
const client = new QueryClient({
  defaultOptions: {
    queries: {
      staleTime: Infinity,
      retry: (failures, error) => failures < 3 && isAppError(error) && error.retryable === true,
      refetchOnWindowFocus: false,
    },
  },
});

const root = document.getElementById("root");
if (root) {
  createRoot(root).render(
    <StrictMode>
      <QueryClientProvider client={client}>
        <CrashScreen>
          <App />
        </CrashScreen>
      </QueryClientProvider>
    </StrictMode>,
  );
}
