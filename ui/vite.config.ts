import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The desktop shell serves ui/dist; Vite only builds it. Tests run in jsdom.
export default defineConfig({
  plugins: [react()],
  clearScreen: false,
  build: { outDir: "dist", target: "safari15", emptyOutDir: true },
  test: { environment: "jsdom", globals: true, include: ["src/**/*.test.{ts,tsx}"] },
});
