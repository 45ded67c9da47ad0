// `npm run soak -- [--minutes 2] [--seed N] [--kill-every-ms 4000] [--keep] [--no-revoke]`: the crash soak across the cluster
// (two relay nodes over nats-server, four agents, a mixed load, a random SIGKILL every few seconds), then the
// checks of every promise. Exits 1 with the list of violations if any broke; 2 if the soak itself could not run.
import { randomInt } from 'node:crypto';
import { DEFAULT_KILL_EVERY_MS, DEFAULT_MINUTES, formatSummary, killSoakNow, runSoak } from './soak/run.ts';

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  if (i >= 0) return args[i + 1];
  return args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
}

function number(args: string[], name: string, fallback: number, check: (n: number) => boolean): number {
  const raw = option(args, name);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || !check(n)) throw new Error(`--${name} ${raw}: not a valid value`);
  return n;
}

async function main(args: string[]): Promise<number> {
  const minutes = number(args, 'minutes', DEFAULT_MINUTES, (n) => n > 0 && n <= 24 * 60);
  const seed = number(args, 'seed', randomInt(2 ** 31), (n) => Number.isInteger(n) && n >= 0 && n < 2 ** 32);
  const killEveryMs = number(args, 'kill-every-ms', DEFAULT_KILL_EVERY_MS, (n) => Number.isInteger(n) && n >= 200);
  const stamp = (): string => new Date().toISOString().slice(11, 19);
  console.log(`crash soak: ${minutes} min, seed ${seed} (repeat with --seed ${seed}), a kill every ${killEveryMs} ms`);
  const result = await runSoak({
    minutes,
    seed,
    killEveryMs,
    keep: args.includes('--keep'),
    noRevoke: args.includes('--no-revoke'),
    log: (l) => console.log(`[${stamp()}] ${l}`),
  });
  console.log(`\n${formatSummary(result)}`);
  console.log(result.violations.length === 0 ? '\nno violations: every promise held' : `\n${result.violations.length} violation(s)`);
  return result.violations.length === 0 ? 0 : 1;
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    const dir = killSoakNow();
    console.error(`\n${sig}: every soak process killed${dir ? `; logs and data left in ${dir}` : ''}`);
    // Let the kills go out before leaving.
    setTimeout(() => process.exit(130), 200);
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`soak failed: ${err.stack ?? err.message}`);
    killSoakNow();
    setTimeout(() => process.exit(2), 200);
  },
);
