/**
 * A worker thread running a module of this project, built or not: a `.js`
 * module (in `dist/`) starts as it is; a `.ts` source (tests, a checkout run
 * through tsx) starts without the parent's TypeScript loader, so the thread
 * registers tsx first and then imports it.
 */
import { Worker, type WorkerOptions } from 'node:worker_threads';

export function moduleWorker(url: URL, options: WorkerOptions = {}): Worker {
  if (!url.pathname.endsWith('.ts')) return new Worker(url, options);
  const boot = `import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(url.href)}); })`;
  return new Worker(boot, { ...options, eval: true });
}
