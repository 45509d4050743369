import { defineConfig } from "vite";

// Relative asset URLs: the same build is served under /ui/ and under a gateway's
// PATH_PREFIX (e.g. /api/orchestrator/ui/). One entry, no inline script (strict CSP).
export default defineConfig({
  base: "./",
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    modulePreload: { polyfill: false },
    sourcemap: false,
    chunkSizeWarningLimit: 250,
  },
});
