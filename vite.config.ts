import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

// The browser chat and status page (src/ui), built to dist/ui and served by the gateway at `/`.
// Preact's automatic JSX runtime through Vite's own (oxc) transform: no Babel in the build.
export default defineConfig({
  root: fileURLToPath(new URL('src/ui', import.meta.url)),
  base: './',
  publicDir: false,
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: fileURLToPath(new URL('dist/ui', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    reportCompressedSize: true,
    modulePreload: { polyfill: false },
  },
  server: {
    // `npx vite` for UI work against a running gateway (PLUGBOARD_GATEWAY, default localhost:8080).
    proxy: Object.fromEntries(
      ['/v1', '/api'].map((p) => [p, process.env.PLUGBOARD_GATEWAY ?? 'http://127.0.0.1:8080']),
    ),
  },
});
