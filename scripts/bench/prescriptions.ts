// `npm run bench -- prescriptions [--count N] [--warmup W] [--concurrency C] [--in-process]`: e-prescriptions end to end between a
// prescriber's agent and two pharmacies' agents through a relay, as deployed: each a separate process (scripts/lib/
// federation.ts), on loopback (real mTLS, LevelDB, sealed messages), the client in the bench process. `--in-process`
// runs all of them in the bench process instead (test/support/pharmacy.ts), as the bench did before, so the two can be
// compared in one sitting. Prescriptions are issued first at the prescriber (not timed); then each is accepted by a
// pharmacy and closed with a MedicationDispense, C at a time: accept+close per second, the latency of one accept+close
// (p50, p99), and the CPU time each process spent per accept+close. The first W accept+closes warm the processes up
// (JIT, caches) and are not counted. The client is node:http with keep-alive connections, as an EHR's would be.
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { post as postInProcess, medicationDispense, medicationRequest, startRoleNetwork } from '../../test/support/pharmacy.ts';
import type { TestNetwork } from '../../test/support/agents.ts';
import { startLocalFederation, waitFor, type LocalFederation } from '../lib/federation.ts';
import type { BenchTable } from './types.ts';
import { cpuSecondsOfPid, httpJson, option, percentile } from './util.ts';

/** Prescriptions accepted and closed, and how many at a time, unless told otherwise. */
export const DEFAULT_COUNT = 1000;
export const DEFAULT_CONCURRENCY = 32;
/** Accept+closes run first and not counted (each process's JIT warm-up, four processes over). */
export const DEFAULT_WARMUP = 400;
/** Accept+close per second the issue asks of this machine. */
export const TARGET_PER_SECOND = 200;
const PRESCRIBER = 'prescriber';
const PHARMACIES = ['pharmacy-a', 'pharmacy-b'] as const;
const PATIENT = 'p-1';

type Answer = { status: number; body: Record<string, unknown> };

/** The parties as the timed part sees them, however they run. */
interface Parties {
  /** JSON POST to a member's API with its token. */
  post(member: string, path: string, body: unknown): Promise<Answer>;
  /** CPU seconds (user + system, every thread) each process has used so far, by a name for the table. */
  cpu(): Record<string, number>;
  /** What runs where, for the table's notes. */
  notes: string[];
  /** Stops every party and removes its files. */
  stop(): Promise<void>;
}

const cpuOfThisProcess = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** Relay, prescriber and pharmacies in their own processes (hie-relay, hie-agent), as deployed. */
async function separateProcesses(): Promise<Parties> {
  const dir = mkdtempSync(join(tmpdir(), 'hie-bench-rx-'));
  const cleanup = (): void => rmSync(dir, { recursive: true, force: true });
  let f: LocalFederation;
  try {
    f = await startLocalFederation({
      dir,
      hospitals: [PRESCRIBER, ...PHARMACIES],
      roles: { [PRESCRIBER]: 'hospital', ...Object.fromEntries(PHARMACIES.map((p) => [p, 'pharmacy' as const])) },
      logLevel: 'warn',
    });
  } catch (err) {
    cleanup();
    throw err;
  }
  try {
    for (const m of [PRESCRIBER, ...PHARMACIES])
      await waitFor(`the member directory at ${m}`, async () => ((await f.api(m, '/v1/federation')).body['directory'] ? true : undefined));
  } catch (err) {
    await f.stop();
    cleanup();
    throw err;
  }
  // The table's order: the prescriber, the pharmacies, then the relay.
  const pids = [PRESCRIBER, ...PHARMACIES, 'relay'].map((name) => [name, f.procs.find((p) => p.name === name)?.child.pid] as const);
  const keepAlive = new Agent({ keepAlive: true, maxSockets: 64 });
  return {
    post: async (member, path, body) => {
      const r = await httpJson(
        `${f.apis[member]}${path}`,
        { method: 'POST', headers: { authorization: `Bearer ${f.tokens[member]}`, 'content-type': 'application/json' }, body: JSON.stringify(body) },
        keepAlive,
      );
      return { status: r.status, body: r.body };
    },
    cpu: () => ({ ...Object.fromEntries(pids.map(([name, pid]) => [name, pid === undefined ? 0 : cpuSecondsOfPid(pid)])), client: cpuOfThisProcess() }),
    notes: [
      'The relay (hie-relay), the prescriber and each pharmacy (hie-agent) run as separate processes, as deployed, each with the node flags of bin/; the client (these HTTP calls) is the bench process.',
      'CPU ms per accept+close: user + system CPU of each process over the timed part (from /proc; every thread, LevelDB and fsync included), divided by the count; each pharmacy serves half the accept+closes. all: the sum, client included.',
    ],
    stop: async () => {
      keepAlive.destroy();
      await f.stop();
      cleanup();
    },
  };
}

/** Relay, prescriber and pharmacies in the bench process (`--in-process`): all their JavaScript shares one core. */
async function inOneProcess(): Promise<Parties> {
  const dir = mkdtempSync(join(tmpdir(), 'hie-bench-rx-'));
  const cleanup = (): void => rmSync(dir, { recursive: true, force: true });
  let n: TestNetwork;
  try {
    n = await startRoleNetwork(dir, { [PRESCRIBER]: 'hospital', ...Object.fromEntries(PHARMACIES.map((p) => [p, 'pharmacy' as const])) });
  } catch (err) {
    cleanup();
    throw err;
  }
  return {
    post: (member, path, body) => postInProcess(n, member, path, body),
    cpu: () => ({ all: cpuOfThisProcess() }),
    notes: [
      '--in-process: all parties (prescriber, two pharmacies, relay, client) run in the bench process, whose JavaScript runs on one core (LevelDB and fsync on libuv worker threads).',
      "CPU ms per accept+close: that process's user + system CPU over the timed part, divided by the count, worker threads included.",
    ],
    stop: async () => {
      await n.close();
      cleanup();
    },
  };
}

/** Issues a prescription at the prescriber; its id and access code. */
async function issue(parties: Parties): Promise<{ id: string; accessCode: string }> {
  const r = await parties.post(PRESCRIBER, '/v1/prescriptions', { patientId: PATIENT, medicationRequest: medicationRequest(PATIENT) });
  if (r.status !== 201) throw new Error(`issue answered ${r.status}: ${JSON.stringify(r.body)}`);
  return r.body as { id: string; accessCode: string };
}

/** See the module comment. */
export async function run(args: string[]): Promise<BenchTable[]> {
  const count = Number(option(args, 'count') ?? DEFAULT_COUNT);
  const concurrency = Number(option(args, 'concurrency') ?? DEFAULT_CONCURRENCY);
  const warmup = Number(option(args, 'warmup') ?? DEFAULT_WARMUP);
  if (!Number.isInteger(count) || count < 1 || !Number.isInteger(concurrency) || concurrency < 1)
    throw new Error('--count and --concurrency must be whole numbers >= 1');
  if (!Number.isInteger(warmup) || warmup < 0) throw new Error('--warmup must be a whole number >= 0');
  const inProcess = args.includes('--in-process');
  const parties = inProcess ? await inOneProcess() : await separateProcesses();
  try {
    const issued: Array<{ id: string; accessCode: string }> = [];
    for (let i = 0; i < count + warmup; i += concurrency) {
      issued.push(...(await Promise.all(Array.from({ length: Math.min(concurrency, count + warmup - i) }, () => issue(parties)))));
    }
    // Warm-up: the pharmacies learn the prescriber's key bundle once.
    for (const p of PHARMACIES) {
      const w = await issue(parties);
      const a = await parties.post(p, '/v1/dispensing', { prescriber: PRESCRIBER, id: w.id, accessCode: w.accessCode });
      if (a.status !== 200) throw new Error(`warm-up accept at ${p} answered ${a.status}: ${JSON.stringify(a.body)}`);
    }
    /** Accepts and closes each of `list`, `concurrency` at a time; the latency of each and how many failed. */
    const acceptAndClose = async (list: typeof issued): Promise<{ latencies: number[]; failed: number }> => {
      const latencies: number[] = [];
      let next = 0;
      let failed = 0;
      await Promise.all(
        Array.from({ length: concurrency }, async (_, worker) => {
          const pharmacy = PHARMACIES[worker % 2] as string;
          for (let i = next++; i < list.length; i = next++) {
            const rx = list[i]!;
            const t0 = performance.now();
            const a = await parties.post(pharmacy, '/v1/dispensing', { prescriber: PRESCRIBER, id: rx.id, accessCode: rx.accessCode });
            const c =
              a.status === 200
                ? await parties.post(pharmacy, `/v1/dispensing/${PRESCRIBER}/${rx.id}/close`, { medicationDispense: medicationDispense(PATIENT) })
                : a;
            if (c.status !== 200) failed++;
            latencies.push(performance.now() - t0);
          }
        }),
      );
      return { latencies, failed };
    };
    const warm = await acceptAndClose(issued.slice(0, warmup));
    if (warm.failed > 0) throw new Error(`${warm.failed} of the ${warmup} warm-up accept+closes failed`);
    const cpu0 = parties.cpu();
    const started = performance.now();
    const { latencies, failed } = await acceptAndClose(issued.slice(warmup));
    const seconds = (performance.now() - started) / 1000;
    const cpu1 = parties.cpu();
    const cpuMs = Object.fromEntries(Object.keys(cpu1).map((name) => [name, (1000 * ((cpu1[name] ?? 0) - (cpu0[name] ?? 0))) / count]));
    const cpuColumns: Record<string, string> = inProcess
      ? { 'CPU ms per accept+close': (cpuMs['all'] ?? 0).toFixed(1) }
      : {
          ...Object.fromEntries(Object.entries(cpuMs).map(([name, ms]) => [`${name} CPU ms`, ms.toFixed(1)])),
          'all CPU ms': Object.values(cpuMs)
            .reduce((a, b) => a + b, 0)
            .toFixed(1),
        };
    const perSecond = (count - failed) / seconds;
    const mode = inProcess ? 'one process (--in-process)' : 'separate processes';
    return [
      {
        title: `prescriptions: accept + close (pharmacy agent -> relay -> prescriber agent, sealed and signed, state db and ledger at the prescriber), ${mode}`,
        rows: [
          {
            prescriptions: count,
            concurrency,
            failed,
            'accept+close/s': perSecond.toFixed(0),
            'p50 ms': percentile(latencies, 50).toFixed(1),
            'p99 ms': percentile(latencies, 99).toFixed(1),
            ...cpuColumns,
          },
        ],
        notes: [
          `target: >= ${TARGET_PER_SECOND} accept+close/s on this machine; every one is two sealed calls, two synced state writes and two ledger entries`,
          `${warmup} accept+closes ran first and are not counted (warm-up); the client is node:http with keep-alive connections.`,
          ...parties.notes,
        ],
        summary: [
          {
            metric: `prescription accept+close/s (${mode})`,
            value: perSecond.toFixed(0),
            target: `>= ${TARGET_PER_SECOND}`,
            met: perSecond >= TARGET_PER_SECOND && failed === 0,
          },
        ],
      },
    ];
  } finally {
    await parties.stop();
  }
}
