import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { moduleWorker } from '../../common/worker.ts';
import { validateR4 } from '../../hospital-agent/fhir/index.ts';

/** What validating a set of published example files found. */
export interface ExamplesResult {
  checked: number;
  /** `file: expression message` for each refused file not in the known refusals. */
  failed: string[];
  /** Files listed as known refusals that passed. */
  passedButKnown: string[];
}

/** Validates each file of `files` in `dir` with the R4 validator, against the named known refusals. */
export function checkExamples(dir: string, files: readonly string[], known: Record<string, unknown>): ExamplesResult {
  const out: ExamplesResult = { checked: 0, failed: [], passedButKnown: [] };
  for (const f of files) {
    const r = JSON.parse(readFileSync(join(dir, f), 'utf8')) as Record<string, unknown>;
    if (typeof r['resourceType'] !== 'string') continue;
    out.checked += 1;
    const issues = validateR4(r);
    if (issues.length > 0 && !known[f]) out.failed.push(`${f}: ${issues[0]?.expression} ${issues[0]?.message}`);
    if (issues.length === 0 && known[f]) out.passedButKnown.push(f);
  }
  return out;
}

/**
 * {@link checkExamples} on a second core: the same check in a worker thread
 * (started by {@link moduleWorker}, which registers tsx in the thread).
 */
export function checkExamplesInWorker(dir: string, files: readonly string[], known: Record<string, unknown>): Promise<ExamplesResult> {
  return new Promise((resolve, reject) => {
    const worker = moduleWorker(new URL(import.meta.url), { workerData: { dir, files, known } });
    worker.once('message', (m: ExamplesResult) => resolve(m));
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (code !== 0) reject(new Error(`the examples worker exited with code ${code}`));
    });
  });
}

if (!isMainThread && parentPort && (workerData as { dir?: unknown } | null)?.dir) {
  const { dir, files, known } = workerData as { dir: string; files: string[]; known: Record<string, unknown> };
  parentPort.postMessage(checkExamples(dir, files, known));
}
