import fc from 'fast-check';
import { tempDir } from '../../support/tmp.ts';

/** A property of a fuzz target, built from the target's state, and how many runs the quick (npm test) pass makes. */
export interface FuzzProperty<C> {
  /** Runs in the quick pass (kept small: the whole quick set stays under a minute on 2 busy cores). */
  quickRuns: number;
  /** A control (the unaltered input passes): long runs make it once instead of looping. */
  control?: boolean;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  build(ctx: C): fc.IRawProperty<any, boolean>;
}

/** A fuzz target: shared state built once (servers, keys, seed inputs), then properties over it. */
export interface FuzzTarget<C = unknown> {
  name: string;
  setup(dir: string): Promise<C>;
  /** Properties by name (the name says what must hold). */
  properties: Record<string, FuzzProperty<C>>;
  teardown(ctx: C): Promise<void>;
}

/** Longest a single async run may take before fast-check counts it as a failure (a hang). */
export const DEFAULT_RUN_TIMEOUT_MS = 15_000;

/** fast-check parameters from the environment: HIE_FUZZ_SEED (and HIE_FUZZ_PATH) replay a reported failure. */
export function envParameters(): fc.Parameters<unknown> {
  const seed = process.env['HIE_FUZZ_SEED'];
  const path = process.env['HIE_FUZZ_PATH'];
  return { ...(seed ? { seed: Number(seed) } : {}), ...(path ? { path } : {}) };
}

/** Registers a target as a mocha suite: setup in before(), one it() per property with its quick run count. */
export function describeTarget<C>(target: FuzzTarget<C>, timeoutMs = 60_000): void {
  describe(`fuzz: ${target.name}`, function () {
    this.timeout(timeoutMs);
    let tmp: ReturnType<typeof tempDir> | undefined;
    let ctx: C | undefined;
    before(async function () {
      tmp = tempDir(`hie-fuzz-${target.name}-`);
      ctx = await target.setup(tmp.dir);
    });
    after(async function () {
      if (ctx !== undefined) await target.teardown(ctx);
      tmp?.cleanup();
    });
    for (const [name, p] of Object.entries(target.properties)) {
      it(name, async function () {
        await fc.assert(p.build(ctx as C), { numRuns: p.quickRuns, timeout: DEFAULT_RUN_TIMEOUT_MS, ...envParameters() });
      });
    }
  });
}

/**
 * Runs one async property body so that a run fast-check stopped waiting for
 * (time limit, run timeout) cannot reject unhandled later, and teardown can
 * wait for it before closing servers ({@link settleRuns}).
 */
export function tracked<T>(runs: Set<Promise<unknown>>, body: () => Promise<T>): Promise<T> {
  const p = body();
  runs.add(p);
  p.then(
    () => runs.delete(p),
    () => runs.delete(p),
  );
  return p;
}

/** Waits (at most `ms`) for every tracked run to settle. */
export async function settleRuns(runs: Set<Promise<unknown>>, ms = 10_000): Promise<void> {
  await Promise.race([Promise.allSettled([...runs]), new Promise((r) => setTimeout(r, ms).unref())]);
}
