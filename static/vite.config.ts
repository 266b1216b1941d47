import { defineConfig } from 'vitest/config';
import react from '@vitejs/plugin-react';

// `npm run dev` proxies the server's routes to a dev_run.py on :5000, so the app still talks only to
// the server's JSON API (and the media it links to), same origin as in production.
const server = process.env.TEAM03_SERVER ?? 'http://127.0.0.1:5000';

export default defineConfig({
  plugins: [react()],
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // Hashed names under assets/: Flask serves them as immutable (server/web/api/spa.py).
    assetsDir: 'assets',
    sourcemap: false,
    chunkSizeWarningLimit: 1200,
  },
  server: {
    proxy: {
      '/api': { target: server, changeOrigin: false },
      '/video_files': { target: server, changeOrigin: false },
    },
  },
  test: {
    environment: 'node',
    // src/: the app's own modules (type-checked with it); test/: checks that run node tools.
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
  },
});
