// The crash soak: start the cluster, run the mixed load while SIGKILLing a random relay node, agent or the NATS
// server every few seconds (each restarted after a short down time), then stop the load, settle and check.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkSoak, type CheckResult } from './check.ts';
import { Load, type LoadBook } from './load.ts';
import { Prng } from './prng.ts';
import { startCluster, type Kind, type Member, type SoakCluster } from './procs.ts';

/** Default soak length. */
export const DEFAULT_MINUTES = 2;
/** Default pause between one restart and the next kill. */
export const DEFAULT_KILL_EVERY_MS = 4000;
/** Load operations in flight at once. */
export const DEFAULT_CONCURRENCY = 3;
/** How long the cluster may take to settle after the load stops. */
export const DEFAULT_SETTLE_MS = 180_000;
/** Chance of each kind of victim. */
const KILL_WEIGHTS: ReadonlyArray<[Kind, number]> = [
  ['agent', 0.45],
  ['relay', 0.35],
  ['nats', 0.2],
];

/** Options of {@link runSoak}. */
export interface SoakOptions {
  minutes: number;
  seed: number;
  killEveryMs: number;
  concurrency?: number;
  settleMs?: number;
  /** Leave consent changes out of the load (grants only): isolates failures that revocations cause. */
  noRevoke?: boolean;
  /** Keep the working directory (logs, data) even when no promise broke. */
  keep?: boolean;
  /** Progress lines. */
  log?: (line: string) => void;
}

/** What a soak run found. */
export interface SoakResult {
  seed: number;
  dir: string;
  kept: boolean;
  loadMs: number;
  kills: Map<string, number>;
  restartMs: number[];
  book: LoadBook;
  check: CheckResult;
  violations: string[];
  noRevoke: boolean;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The running soak's cluster, so a signal handler can kill it. */
let live: SoakCluster | undefined;

/** SIGKILLs every process of a running soak (for signal handlers); returns its working directory (logs, data), if one runs. */
export function killSoakNow(): string | undefined {
  live?.killNow();
  return live?.dir;
}

function victim(rng: Prng, cluster: SoakCluster): Member {
  let r = rng.next();
  let kind: Kind = 'agent';
  for (const [k, w] of KILL_WEIGHTS) {
    if (r < w) {
      kind = k;
      break;
    }
    r -= w;
  }
  return rng.pick(cluster.all().filter((m) => m.kind === kind));
}

/** Runs one soak; throws only when the cluster cannot start or a killed process cannot be restarted. */
export async function runSoak(o: SoakOptions): Promise<SoakResult> {
  const log = o.log ?? (() => undefined);
  const rng = new Prng(o.seed);
  const killRng = rng.fork();
  const loadRng = rng.fork();
  const dir = mkdtempSync(join(tmpdir(), 'hie-soak-'));
  log(`seed ${o.seed}; working directory ${dir}`);
  const violations: string[] = [];
  const kills = new Map<string, number>();
  const restartMs: number[] = [];
  let cluster: SoakCluster | undefined;
  let kept = true;
  try {
    cluster = await startCluster(dir);
    live = cluster;
    const c = cluster;
    log(`cluster up: nats-server, relay nodes n1 n2, agents ${c.agents.map((a) => a.id).join(' ')}`);
    const load = new Load(c.agents, c.token, loadRng, !o.noRevoke);
    await load.grantAll();
    const t0 = Date.now();
    const endAt = t0 + o.minutes * 60_000;

    const workers = Array.from({ length: o.concurrency ?? DEFAULT_CONCURRENCY }, async () => {
      while (Date.now() < endAt) {
        await load.step();
        await sleep(loadRng.int(20, 200));
      }
    });
    const answerer = (async () => {
      while (Date.now() < endAt) {
        await load.answerRequests();
        await sleep(1500);
      }
    })();
    let restartFailure: Error | undefined;
    const killer = (async () => {
      // The pause comes before each kill, so the last restart is not followed by an idle pause the settle time would hide.
      for (;;) {
        await sleep(o.killEveryMs);
        if (Date.now() >= endAt) return;
        const m = victim(killRng, c);
        const downMs = killRng.int(200, 2000);
        await m.kill('SIGKILL');
        kills.set(m.kind, (kills.get(m.kind) ?? 0) + 1);
        log(`+${Math.round((Date.now() - t0) / 1000)} s: SIGKILL ${m.name}, down ${downMs} ms`);
        await sleep(downMs);
        const s = Date.now();
        try {
          await m.start();
        } catch (err) {
          restartFailure = new Error(`${m.name} did not restart after its kill: ${(err as Error).message}`);
          return;
        }
        restartMs.push(Date.now() - s);
      }
    })();
    await killer;
    if (restartFailure) throw restartFailure;
    await Promise.all([...workers, answerer]);
    const loadMs = Date.now() - t0;
    log(`load stopped after ${Math.round(loadMs / 1000)} s: ${load.book.accepted.size} exchanges accepted; settling`);
    for (const m of c.all()) if (!m.up()) violations.push(`${m.name} is not running at the end of the load`);
    const check = await checkSoak(c.agents, c.token, load.book.accepted, load.book.requests.ids, o.settleMs ?? DEFAULT_SETTLE_MS);
    violations.push(...check.violations);
    kept = o.keep === true || violations.length > 0;
    return { seed: o.seed, noRevoke: o.noRevoke === true, dir, kept, loadMs, kills, restartMs, book: load.book, check, violations };
  } finally {
    await cluster?.stop().catch(() => cluster?.killNow());
    live = undefined;
    if (!kept) rmSync(dir, { recursive: true, force: true });
  }
}

/** The summary table of a run. */
export function formatSummary(r: SoakResult): string {
  const rows: Array<[string, string]> = [];
  const b = r.book;
  const accepted = [...b.accepted.values()];
  const kinds = ['fhir', 'binary', 'answer'].map((k) => `${k} ${accepted.filter((x) => x.kind === k).length}`).join(', ');
  rows.push(['seed', String(r.seed)]);
  if (r.noRevoke) rows.push(['consent changes', 'off (--no-revoke)']);
  rows.push(['load', `${(r.loadMs / 1000).toFixed(0)} s`]);
  rows.push([
    'kills',
    `${[...r.kills.values()].reduce((s, n) => s + n, 0)} (${['relay', 'agent', 'nats'].map((k) => `${k} ${r.kills.get(k) ?? 0}`).join(', ')})`,
  ]);
  const rs = [...r.restartMs].sort((x, y) => x - y);
  if (rs.length > 0) rows.push(['restart time', `median ${rs[Math.floor(rs.length / 2)]} ms, max ${rs[rs.length - 1]} ms`]);
  rows.push(['exchanges accepted (202)', `${accepted.length} (${kinds}; ${(accepted.reduce((s, x) => s + x.bytes, 0) / 1024 ** 2).toFixed(1)} MiB)`]);
  rows.push(['  delivered', String(r.check.delivered)]);
  const failed = [...r.check.failed.entries()].map(([k, n]) => `${k} ${n}`).join(', ');
  rows.push(['  failed', `${[...r.check.failed.values()].reduce((s, n) => s + n, 0)}${failed ? ` (${failed})` : ''}`]);
  rows.push(['  held by a sender, 202 not seen', String(r.check.unbooked)]);
  rows.push(['submissions refused', [...b.refused.entries()].map(([k, n]) => `${k} ${n}`).join(', ') || '0']);
  rows.push(['calls cut by a kill / skipped (agent down)', `${b.cut} / ${b.skipped}`]);
  rows.push(['consents', `granted ${b.consents.granted}, revoked ${b.consents.revoked}, calls failed ${b.consents.failed}`]);
  rows.push([
    'records requests',
    `${b.requests.sent} sent (${[...r.check.requests.entries()].map(([k, n]) => `${k} ${n}`).join(', ')}), answered ${b.requests.answered}`,
  ]);
  rows.push(['time to settle', `${(r.check.settleMs / 1000).toFixed(1)} s`]);
  rows.push(['violations', String(r.violations.length)]);
  const w = Math.max(...rows.map(([k]) => k.length));
  const lines = rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`);
  if (r.violations.length > 0) lines.push('', 'VIOLATIONS:', ...r.violations.map((v) => `  - ${v}`), '', `logs and data kept in ${r.dir}`);
  else if (r.kept) lines.push('', `logs and data kept in ${r.dir}`);
  return lines.join('\n');
}
