// Builds the page into dist/: app.js (the main thread's sources and
// three.js, bundled and minified by esbuild), worker.js (the session's, run
// as the page's module worker) and index.html. Nothing is fetched at run
// time.
import { build } from 'esbuild';
import { copyFile, mkdir, readdir, rm } from 'node:fs/promises';

const dist = new URL('./dist/', import.meta.url);
await mkdir(dist, { recursive: true });
for (const f of await readdir(dist)) {
  if (f !== '.gitkeep') await rm(new URL(f, dist), { recursive: true });
}
await build({
  entryPoints: {
    app: new URL('./src/main.js', import.meta.url).pathname,
    worker: new URL('./src/worker.js', import.meta.url).pathname,
  },
  outdir: dist.pathname,
  bundle: true,
  format: 'esm',
  minify: true,
  target: ['chrome110'],
  legalComments: 'linked',
  logLevel: 'warning',
});
await copyFile(new URL('./src/index.html', import.meta.url), new URL('index.html', dist));
