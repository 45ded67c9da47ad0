/**
 * Long fuzz runs: `npm run fuzz -- --time 60 [--target frame-decoder,ledger] [--property text] [--seed S --path P]`.
 * Runs each selected target's properties in a loop of fresh seeds until its
 * share of the time budget is spent, reports runs and failures per property,
 * prints every failure with the seed and path that replay it, and exits
 * non-zero when anything failed. Targets and properties are the ones the quick
 * suite in `npm test` runs (test/fuzz/).
 */
import { parseArgs } from 'node:util';
import fc from 'fast-check';
import { DEFAULT_RUN_TIMEOUT_MS, type FuzzTarget } from '../test/fuzz/support/harness.ts';
import { tempDir } from '../test/support/tmp.ts';
import { FUZZ_TARGETS } from '../test/fuzz/targets/index.ts';

/** Total budget when --time is not given, in seconds. */
const DEFAULT_TIME_S = 60;
/** Runs per fast-check call before the loop takes a new seed (and checks the clock). */
const DEFAULT_BATCH = 50;

interface Outcome {
  target: string;
  property: string;
  runs: number;
  failures: number;
  ms: number;
}

async function runTarget(
  target: FuzzTarget<unknown>,
  budgetMs: number,
  replay: { seed?: number; path?: string },
  only: string | undefined,
  log: (s: string) => void,
): Promise<Outcome[]> {
  const tmp = tempDir(`hie-fuzz-${target.name}-`);
  const started = Date.now();
  const outcomes: Outcome[] = [];
  let ctx: unknown;
  try {
    ctx = await target.setup(tmp.dir);
    const names = Object.keys(target.properties).filter((n) => only === undefined || n.includes(only));
    const perProperty = Math.max(1000, (budgetMs - (Date.now() - started)) / names.length);
    for (const name of names) {
      const p = target.properties[name]!;
      const property = p.build(ctx);
      const o: Outcome = { target: target.name, property: name, runs: 0, failures: 0, ms: 0 };
      const t0 = Date.now();
      const end = t0 + perProperty;
      do {
        if (replay.seed === undefined && end - Date.now() < 50) break;
        const seed = replay.seed ?? (Math.random() * 0x7fff_ffff) | 0;
        const details = await fc.check(property, {
          seed,
          ...(replay.path ? { path: replay.path } : {}),
          numRuns: p.control ? p.quickRuns : replay.seed !== undefined ? Math.max(p.quickRuns, DEFAULT_BATCH) : DEFAULT_BATCH,
          timeout: DEFAULT_RUN_TIMEOUT_MS,
          interruptAfterTimeLimit: Math.max(1, end - Date.now()),
          markInterruptAsFailure: false,
        });
        o.runs += details.numRuns;
        // A batch cut by the clock before its first run is not a finding.
        if (details.failed && !(details.interrupted && details.counterexample === null)) {
          o.failures += 1;
          log(`\nFAILURE in ${target.name} / ${name}`);
          log(fc.defaultReportMessage(details) ?? '(no report)');
          const cause = details.errorInstance as Error | undefined;
          if (cause) log(`error: ${cause.message}`);
          log(`replay: npm run fuzz -- --target ${target.name} --property '${name}' --seed ${details.seed} --path ${details.counterexamplePath ?? ''}`);
          log(`   or: HIE_FUZZ_SEED=${details.seed} HIE_FUZZ_PATH=${details.counterexamplePath ?? ''} npx mocha 'test/fuzz/**/*.test.ts' --fgrep '${name}'`);
          break; // One reproducible failure per property is enough; shrinking already ran.
        }
        if (replay.seed !== undefined || p.control) break;
      } while (Date.now() < end);
      o.ms = Date.now() - t0;
      outcomes.push(o);
      log(`${target.name} / ${name}: ${o.runs} runs, ${o.failures} failures, ${(o.ms / 1000).toFixed(1)} s`);
    }
  } finally {
    if (ctx !== undefined) await target.teardown(ctx).catch((err: Error) => log(`teardown of ${target.name} failed: ${err.message}`));
    tmp.cleanup();
  }
  return outcomes;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      time: { type: 'string' },
      target: { type: 'string' },
      property: { type: 'string' },
      seed: { type: 'string' },
      path: { type: 'string' },
      list: { type: 'boolean' },
    },
  });
  const log = (s: string): void => void process.stdout.write(`${s}\n`);
  if (values.list) {
    for (const t of FUZZ_TARGETS) log(`${t.name}: ${Object.keys(t.properties).join('; ')}`);
    return 0;
  }
  const time = Number(values.time ?? DEFAULT_TIME_S);
  if (!Number.isFinite(time) || time <= 0) {
    process.stderr.write(`--time must be a positive number of seconds, got ${values.time}\n`);
    return 2;
  }
  const wanted = values.target
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const targets = wanted ? FUZZ_TARGETS.filter((t) => wanted.includes(t.name)) : FUZZ_TARGETS;
  const unknown = wanted?.filter((w) => !FUZZ_TARGETS.some((t) => t.name === w)) ?? [];
  if (unknown.length > 0 || targets.length === 0) {
    process.stderr.write(`unknown target ${unknown.join(', ')}; targets: ${FUZZ_TARGETS.map((t) => t.name).join(', ')}\n`);
    return 2;
  }
  const replay = { ...(values.seed !== undefined ? { seed: Number(values.seed) } : {}), ...(values.path ? { path: values.path } : {}) };
  log(`fuzzing ${targets.map((t) => t.name).join(', ')} for ${time} s in total`);
  const all: Outcome[] = [];
  const started = Date.now();
  for (const [i, t] of targets.entries()) {
    const left = time * 1000 - (Date.now() - started);
    all.push(...(await runTarget(t, Math.max(1000, left / (targets.length - i)), replay, values.property, log)));
  }
  const runs = all.reduce((n, o) => n + o.runs, 0);
  const failures = all.reduce((n, o) => n + o.failures, 0);
  log(`\n${runs} runs over ${all.length} properties in ${((Date.now() - started) / 1000).toFixed(1)} s, ${failures} failing`);
  return failures > 0 ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`fuzz: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
