// `npm run bench -- prescriptions [--count N] [--concurrency C]`: e-prescriptions end to end, in one process: a
// prescriber's agent, two pharmacies' agents and a relay on loopback (real mTLS, LevelDB, sealed messages). Prescriptions
// are issued first (not timed); then each is accepted by a pharmacy and closed with a MedicationDispense, C at a time:
// accept+close per second and the latency of one accept+close (p50, p99).
import { issuePrescription, medicationDispense, post, startRoleNetwork } from '../../test/support/pharmacy.ts';
import { tempDir } from '../../test/support/tmp.ts';
import type { BenchTable } from './types.ts';
import { option, percentile } from './util.ts';

/** Prescriptions accepted and closed, and how many at a time, unless told otherwise. */
export const DEFAULT_COUNT = 400;
export const DEFAULT_CONCURRENCY = 16;
/** Accept+close per second the issue asks of this machine. */
export const TARGET_PER_SECOND = 200;

/** See the module comment. */
export async function run(args: string[]): Promise<BenchTable[]> {
  const count = Number(option(args, 'count') ?? DEFAULT_COUNT);
  const concurrency = Number(option(args, 'concurrency') ?? DEFAULT_CONCURRENCY);
  if (!Number.isInteger(count) || count < 1 || !Number.isInteger(concurrency) || concurrency < 1)
    throw new Error('--count and --concurrency must be whole numbers >= 1');
  const tmp = tempDir();
  const net = await startRoleNetwork(tmp.dir, { prescriber: 'hospital', 'pharmacy-a': 'pharmacy', 'pharmacy-b': 'pharmacy' });
  try {
    const issued: Array<{ id: string; accessCode: string }> = [];
    for (let i = 0; i < count; i += concurrency) {
      issued.push(...(await Promise.all(Array.from({ length: Math.min(concurrency, count - i) }, () => issuePrescription(net, 'prescriber')))));
    }
    // Warm-up: the pharmacies learn the prescriber's key bundle once.
    for (const p of ['pharmacy-a', 'pharmacy-b']) {
      const w = await issuePrescription(net, 'prescriber');
      await post(net, p, '/v1/dispensing', { prescriber: 'prescriber', id: w.id, accessCode: w.accessCode });
    }
    const latencies: number[] = [];
    let next = 0;
    let failed = 0;
    const cpu0 = process.cpuUsage();
    const started = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async (_, worker) => {
        const pharmacy = worker % 2 === 0 ? 'pharmacy-a' : 'pharmacy-b';
        for (let i = next++; i < issued.length; i = next++) {
          const rx = issued[i]!;
          const t0 = performance.now();
          const a = await post(net, pharmacy, '/v1/dispensing', { prescriber: 'prescriber', id: rx.id, accessCode: rx.accessCode });
          const c = a.status === 200 ? await post(net, pharmacy, `/v1/dispensing/prescriber/${rx.id}/close`, { medicationDispense: medicationDispense() }) : a;
          if (c.status !== 200) failed++;
          latencies.push(performance.now() - t0);
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const perSecond = (count - failed) / seconds;
    return [
      {
        title: 'prescriptions: accept + close (pharmacy agent -> relay -> prescriber agent, sealed and signed, state db and ledger at the prescriber)',
        rows: [
          {
            prescriptions: count,
            concurrency,
            failed,
            'accept+close/s': perSecond.toFixed(0),
            'p50 ms': percentile(latencies, 50).toFixed(1),
            'p99 ms': percentile(latencies, 99).toFixed(1),
            'CPU ms per accept+close': ((cpu.user + cpu.system) / 1000 / count).toFixed(1),
          },
        ],
        notes: [
          `target: >= ${TARGET_PER_SECOND} accept+close/s on this machine; every one is two sealed calls, two synced state writes and two ledger entries`,
          "All parties (prescriber, two pharmacies, relay, client) run in this one process, whose JavaScript runs on one core (LevelDB and fsync on libuv worker threads). CPU ms per accept+close is that process's user + system CPU over the timed part, divided by the count, worker threads included.",
        ],
        summary: [
          {
            metric: 'prescription accept+close/s',
            value: perSecond.toFixed(0),
            target: `>= ${TARGET_PER_SECOND}`,
            met: perSecond >= TARGET_PER_SECOND && failed === 0,
          },
        ],
      },
    ];
  } finally {
    await net.close();
    tmp.cleanup();
  }
}
