import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App";
import { CrashScreen } from "./components/Crash";
import "./styles.css";

// Reads are local and cheap; freshness comes from store events, not timers.
const client = new QueryClient({
  defaultOptions: { queries: { staleTime: Infinity, retry: false, refetchOnWindowFocus: false } },
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
