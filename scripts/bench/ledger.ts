// `npm run bench -- ledger [entries]`: signed appends/s, verified entries/s and
// the time to replicate N entries (default 100,000) between two replicas over
// the in-memory transport, in one run on real LevelDB.
import { readFileSync } from 'node:fs';
import { createKeyBundle, generateAgentKeys, loadIdentity } from '../../certs/index.ts';
import { Ledger, levelSource, MemoryNetwork, Replicator, verifyLedger, type AppendInput } from '../../ledger/index.ts';
import { makeFederation } from '../../test/support/federation.ts';
import { tempDir } from '../../test/support/tmp.ts';
import type { BenchTable } from './types.ts';

const DEFAULT_ENTRIES = 100_000;
const SEQUENTIAL_APPENDS = 5_000;
const CONCURRENCY = 64;
const REPLICATION_DEADLINE_MS = 120_000;

const entry = (i: number): AppendInput => ({
  type: 'exchange.received',
  body: { exchange: `bench-${String(i).padStart(10, '0')}`, from: 'bravo', contentType: 'application/fhir+json', bytes: 1000 + i, hash: 'a'.repeat(64) },
});

const rate = (n: number, ms: number): number => Math.round(n / (ms / 1000));

/** Runs the ledger bench. */
export async function run(args: string[]): Promise<BenchTable[]> {
  const total = args[0] !== undefined ? Number(args[0]) : DEFAULT_ENTRIES;
  if (!Number.isInteger(total) || total < 1000) throw new Error(`entries must be a whole number >= 1000, got ${args[0]}`);
  const tmp = tempDir('hie-bench-ledger-');
  try {
    const fed = makeFederation(tmp.dir, ['alpha', 'bravo']);
    const caPem = readFileSync(fed.caPath, 'utf8');
    const author = async (id: string) => {
      const keys = generateAgentKeys();
      const bundle = await createKeyBundle(loadIdentity(fed.agents[id]!), keys, { now: new Date(Date.now() - 60_000) });
      return { feed: id, signingKey: keys.signing.privateKey, bundle };
    };
    const alpha = await Ledger.open({ path: `${tmp.dir}/alpha`, trust: { caPem }, author: await author('alpha') });

    // 1. Sequential appends: every append awaited, its own batch and signed head.
    let t = performance.now();
    for (let i = 0; i < SEQUENTIAL_APPENDS; i++) await alpha.append(entry(i));
    const seqMs = performance.now() - t;

    // 2. Concurrent callers: appends waiting together share one batch and one signed head.
    t = performance.now();
    let next = SEQUENTIAL_APPENDS;
    const worker = async (): Promise<void> => {
      while (next < total) await alpha.append(entry(next++));
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const concMs = performance.now() - t;
    const concN = total - SEQUENTIAL_APPENDS;

    // 3. Verify the whole feed offline.
    t = performance.now();
    const v = await verifyLedger(levelSource(alpha._store), { trust: { caPem } });
    const verifyMs = performance.now() - t;
    if (v.findings.some((f) => !f.rule.startsWith('exchange.'))) throw new Error(`bench ledger does not verify: ${v.findings[0]?.rule}`);

    // 4. Replicate everything to an empty replica over the in-memory transport.
    const bravo = await Ledger.open({ path: `${tmp.dir}/bravo`, trust: { caPem }, author: await author('bravo') });
    const net = new MemoryNetwork();
    const ra = new Replicator(alpha, net.endpoint('alpha'), { peers: ['bravo'], gossipIntervalMs: 0, checkpointIntervalMs: 0 });
    const rb = new Replicator(bravo, net.endpoint('bravo'), { peers: ['alpha'], gossipIntervalMs: 0, checkpointIntervalMs: 0 });
    t = performance.now();
    ra.start();
    rb.start();
    const target = alpha.head()!.seq;
    while ((bravo.head('alpha')?.seq ?? -1) < target) {
      if (performance.now() - t > REPLICATION_DEADLINE_MS) throw new Error('replication did not finish in time');
      await new Promise((r) => setTimeout(r, 5));
    }
    const replMs = performance.now() - t;
    ra.stop();
    rb.stop();
    await alpha.close();
    await bravo.close();

    return [
      {
        title: `ledger: ${total.toLocaleString('en')} entries, LevelDB on disk`,
        rows: [
          { measure: 'signed appends/s, sequential (each awaited, one signed head each)', value: rate(SEQUENTIAL_APPENDS, seqMs), target: '-' },
          {
            measure: `signed appends/s, ${CONCURRENCY} concurrent callers (group commit, one signed head per batch)`,
            value: rate(concN, concMs),
            target: '>= 10,000',
          },
          { measure: 'verified entries/s (offline verify of the whole feed)', value: rate(v.stats.entries, verifyMs), target: '>= 30,000' },
          { measure: `replicate ${(target + 1).toLocaleString('en')} entries to an empty replica, s`, value: (replMs / 1000).toFixed(1), target: '< 15' },
        ],
        summary: [
          { metric: 'ledger signed appends/s (concurrent)', value: String(rate(concN, concMs)), target: '>= 10,000', met: (concN / concMs) * 1000 >= 10_000 },
          {
            metric: 'ledger verified entries/s',
            value: String(rate(v.stats.entries, verifyMs)),
            target: '>= 30,000',
            met: (v.stats.entries / verifyMs) * 1000 >= 30_000,
          },
          { metric: 'ledger replicate 100k entries, s', value: (replMs / 1000).toFixed(1), target: '< 15', met: replMs < 15_000 },
        ],
        notes: [
          `Ed25519 signatures checked by verify: ${v.stats.signaturesChecked} (one per feed head); replication batches of 512 entries, one signed head each.`,
        ],
      },
    ];
  } finally {
    tmp.cleanup();
  }
}
