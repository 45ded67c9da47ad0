// `npm run bench -- ledger [entries]`: signed appends/s (each batch also
// extends the feed's Merkle tree and signs a checkpoint), verified entries/s,
// inclusion and consistency proofs on the large feed, building the tree of an
// existing feed at open, an auditor's proof file for one entry, and the time
// to replicate N entries (default 100,000) between two replicas over the
// in-memory transport, and the time for an agent that lost its database
// (keys kept) to get those N own entries back from that replica before it
// appends (ledger/recovery.ts), in one run on real LevelDB.
import { readFileSync, rmSync } from 'node:fs';
import { createKeyBundle, generateAgentKeys, loadIdentity } from '../../certs/index.ts';
import {
  buildProof,
  FeedRecovery,
  leafHash,
  Ledger,
  levelSource,
  MemoryNetwork,
  Replicator,
  Witness,
  verifyConsistency,
  verifyInclusion,
  verifyLedger,
  verifyProof,
  type AppendInput,
} from '../../ledger/index.ts';
import { makeFederation } from '../../test/support/federation.ts';
import { tempDir } from '../../test/support/tmp.ts';
import type { BenchTable } from './types.ts';
import type { Store } from '../../ledger/store.ts';

const DEFAULT_ENTRIES = 100_000;
const SEQUENTIAL_APPENDS = 5_000;
const CONCURRENCY = 64;
/** Replication rows give up after this long: 2 minutes, or 0.4 ms per entry on larger feeds (private mode seals every entry). */
const replicationDeadlineMs = (entries: number): number => Math.max(120_000, entries * 0.4);
const PROOFS = 200;

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
  let tables: BenchTable[];
  try {
    tables = await measure(total, tmp);
  } catch (err) {
    // A failed run may leave a replica writing into its directory: its own error is the one to report, not the clean-up's.
    try {
      tmp.cleanup();
    } catch {
      /* the run's own error is thrown below */
    }
    throw err;
  }
  tmp.cleanup();
  return tables;
}

async function measure(total: number, tmp: { dir: string }): Promise<BenchTable[]> {
  const fed = makeFederation(tmp.dir, ['alpha', 'bravo', 'charlie']);
  const caPem = readFileSync(fed.caPath, 'utf8');
  const author = async (id: string) => {
    const keys = generateAgentKeys();
    const bundle = await createKeyBundle(loadIdentity(fed.agents[id]!), keys, { now: new Date(Date.now() - 60_000) });
    return { feed: id, signingKey: keys.signing.privateKey, bundle };
  };
  // Every party's key bundle predates the feed, as in a federation: a witness's bundle is checked at the proven entries' time.
  const alphaAuthor = await author('alpha');
  const bravoAuthor = await author('bravo');
  const charlieAuthor = await author('charlie');
  let alpha = await Ledger.open({ path: `${tmp.dir}/alpha`, trust: { caPem }, author: alphaAuthor });

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

  // 3b. Proofs on the large feed: generation reads O(log n) stored nodes; verification hashes O(log n).
  const size = alpha.treeSize('alpha');
  const root = await alpha.treeRoot('alpha');
  const seqs = Array.from({ length: PROOFS }, (_, i) => Math.floor(((i + 0.5) * size) / PROOFS));
  const leaves = new Map<number, Buffer>();
  for (const s of seqs) leaves.set(s, leafHash((await alpha.get('alpha', s))!.bytes));
  t = performance.now();
  const proofs: Buffer[][] = [];
  for (const s of seqs) proofs.push(await alpha.inclusionProof('alpha', s, size));
  const incGenMs = (performance.now() - t) / PROOFS;
  t = performance.now();
  for (const [i, s] of seqs.entries()) if (!verifyInclusion(s, size, leaves.get(s), proofs[i], root)) throw new Error('inclusion proof failed');
  const incVerUs = ((performance.now() - t) / PROOFS) * 1000;
  t = performance.now();
  const cons: Array<{ m: number; p: Buffer[]; r: Buffer }> = [];
  for (const m of seqs.slice(0, 50)) cons.push({ m: m + 1, p: await alpha.consistencyProof('alpha', m + 1, size), r: await alpha.treeRoot('alpha', m + 1) });
  const consGenMs = (performance.now() - t) / 50;
  for (const c of cons) if (!verifyConsistency(c.m, size, c.p, c.r, root)) throw new Error('consistency proof failed');
  const proofLen = Math.max(...proofs.map((p) => p.length));

  // 3c. What the tree costs on disk: its nodes (keys and 32-byte values) and the signed checkpoint notes, per entry of the feed.
  const storage = await treeStorage(alpha._store, 'alpha', size);

  // 3d. An existing feed without a tree (as written before trees): built at open from the stored bytes.
  await alpha.close();
  {
    const { Store } = await import('../../ledger/store.ts');
    const s = await Store.open(`${tmp.dir}/alpha`);
    await s.tree.clear();
    await s.notes.clear();
    await s.close();
  }
  t = performance.now();
  const reopened = await Ledger.open({ path: `${tmp.dir}/alpha`, trust: { caPem }, author: alphaAuthor });
  const buildMs = performance.now() - t;
  if (!(await reopened.treeRoot('alpha')).equals(root)) throw new Error('rebuilt tree differs');
  await reopened.close();
  const alpha2 = await Ledger.open({ path: `${tmp.dir}/alpha`, trust: { caPem }, author: alphaAuthor });

  // 4. Replicate everything to an empty replica over the in-memory transport.
  const bravo = await Ledger.open({ path: `${tmp.dir}/bravo`, trust: { caPem }, author: bravoAuthor });
  alpha = alpha2;
  const net = new MemoryNetwork();
  // Both agents witness: bravo cosigns each checkpoint its ranges carry (after a consistency proof) and sends the cosignature back.
  const wa = new Witness(alpha, { id: 'alpha', signingKey: alphaAuthor.signingKey });
  const wb = new Witness(bravo, { id: 'bravo', signingKey: bravoAuthor.signingKey });
  const ra = new Replicator(alpha, net.endpoint('alpha'), { peers: ['bravo'], gossipIntervalMs: 0, checkpointIntervalMs: 0, witness: wa });
  const rb = new Replicator(bravo, net.endpoint('bravo'), { peers: ['alpha'], gossipIntervalMs: 0, checkpointIntervalMs: 0, witness: wb });
  t = performance.now();
  ra.start();
  rb.start();
  const target = alpha.head()!.seq;
  while ((bravo.head('alpha')?.seq ?? -1) < target) {
    if (performance.now() - t > replicationDeadlineMs(total)) throw new Error('replication did not finish in time');
    await new Promise((r) => setTimeout(r, 5));
  }
  const replMs = performance.now() - t;
  await rb.idle();
  await ra.idle();
  ra.stop();

  // 4b. Private replication (docs/replication.md) to a replica party to none of the entries: every one is sealed on the way.
  const charlie = await Ledger.open({ path: `${tmp.dir}/charlie`, trust: { caPem }, author: charlieAuthor });
  const pnet = new MemoryNetwork();
  const rpa = new Replicator(alpha, pnet.endpoint('alpha'), { peers: ['charlie'], gossipIntervalMs: 0, checkpointIntervalMs: 0, mode: 'private' });
  const rpc = new Replicator(charlie, pnet.endpoint('charlie'), { peers: ['alpha'], gossipIntervalMs: 0, checkpointIntervalMs: 0, mode: 'private' });
  t = performance.now();
  rpa.start();
  rpc.start();
  while ((charlie.head('alpha')?.seq ?? -1) < target) {
    if (performance.now() - t > replicationDeadlineMs(total)) throw new Error('private replication did not finish in time');
    await new Promise((r) => setTimeout(r, 5));
  }
  const privMs = performance.now() - t;
  await rpc.idle();
  await rpa.idle();
  rpa.stop();
  rpc.stop();
  const sealedHeld = (await verifyLedger(levelSource(charlie._store), { trust: { caPem } })).stats.sealed;
  if (sealedHeld !== target) throw new Error(`charlie holds ${sealedHeld} sealed entries of alpha's ${target + 1}, expected all but the genesis`);
  await charlie.close();
  const cosigned = await wa.cosignedCovering('alpha', seqs[PROOFS / 2]!);
  if (!cosigned) throw new Error('no checkpoint of alpha came back cosigned by bravo');

  // 5. An auditor's proof file for one entry of the large feed: build from LevelDB, verify with the CA only (default policy: 1 witness).
  t = performance.now();
  const built = await buildProof(alpha._store, { entries: [{ feed: 'alpha', seq: seqs[PROOFS / 2]! }] });
  const proveMs = performance.now() - t;
  t = performance.now();
  const checked = await verifyProof(JSON.parse(JSON.stringify(built.file)), { caPem });
  const verifyProofMs = performance.now() - t;
  if (!checked.ok) throw new Error(`proof file does not verify: ${checked.failures[0]}`);
  const proofBytes = Buffer.byteLength(JSON.stringify(built.file));
  await alpha.close();

  // 6. alpha's whole database is lost (its keys are kept): it gets its own feed back from bravo before appending.
  rmSync(`${tmp.dir}/alpha`, { recursive: true, force: true });
  const restored = await Ledger.open({ path: `${tmp.dir}/alpha`, trust: { caPem }, author: alphaAuthor, recover: true });
  const recovery = new FeedRecovery(restored, net.endpoint('alpha'), { peers: ['bravo'] });
  t = performance.now();
  const outcome = await recovery.run();
  const restoreMs = performance.now() - t;
  if (outcome.state !== 'complete' || restored.head()?.hash !== bravo.head('alpha')?.hash || restored.isRecovering)
    throw new Error(`recovery ended ${outcome.state} at ${outcome.head}, not at bravo's head of alpha`);
  const restoredN = outcome.restored;
  rb.stop();
  await restored.close();
  await bravo.close();

  return [
    {
      title: `ledger: ${total.toLocaleString('en')} entries, LevelDB on disk`,
      rows: [
        { measure: 'signed appends/s, sequential (each awaited, one signed head each)', value: rate(SEQUENTIAL_APPENDS, seqMs), target: '-' },
        {
          measure: `signed appends/s, ${CONCURRENCY} concurrent callers (group commit, one signed head per batch)`,
          value: rate(concN, concMs),
          target: '>= 30,000',
        },
        { measure: 'verified entries/s (offline verify of the whole feed)', value: rate(v.stats.entries, verifyMs), target: '>= 30,000' },
        { measure: `replicate ${(target + 1).toLocaleString('en')} entries to an empty replica, s`, value: (replMs / 1000).toFixed(1), target: '< 15' },
        {
          measure: `replicate them in private mode to a replica party to none (${sealedHeld.toLocaleString('en')} sealed on the way), s`,
          value: (privMs / 1000).toFixed(1),
          target: '-',
        },
        {
          measure: `restored agent (database lost, keys kept) gets its ${restoredN.toLocaleString('en')} own entries back from a peer, verified, s`,
          value: (restoreMs / 1000).toFixed(1),
          target: '< 15',
        },
        {
          measure: `inclusion proof of one entry of ${size.toLocaleString('en')} (${proofLen} hashes), generation from LevelDB, ms`,
          value: incGenMs.toFixed(3),
          target: '< 5',
        },
        { measure: 'inclusion proof verification, µs', value: incVerUs.toFixed(1), target: '-' },
        { measure: 'consistency proof, generation from LevelDB, ms', value: consGenMs.toFixed(3), target: '< 5' },
        {
          measure: `prove one entry of ${size.toLocaleString('en')} against a witnessed checkpoint (proof file of ${proofBytes.toLocaleString('en')} bytes), ms`,
          value: proveMs.toFixed(1),
          target: '< 10',
        },
        {
          measure: 'verify-proof of that file with the CA only (bundles, checkpoint, cosignature under the default policy, inclusion), ms',
          value: verifyProofMs.toFixed(1),
          target: '< 10',
        },
        {
          measure: `tree storage per entry: ${storage.nodes.toLocaleString('en')} nodes (${storage.nodeBytesPerEntry.toFixed(1)} B/entry as stored key+value bytes), checkpoint notes ${storage.noteBytesPerEntry.toFixed(1)} B/entry; on disk after compaction, B/entry`,
          value: storage.diskBytesPerEntry.toFixed(1),
          target: '-',
        },
        { measure: `build the tree of an existing ${size.toLocaleString('en')}-entry feed at open, s`, value: (buildMs / 1000).toFixed(2), target: '-' },
      ],
      summary: [
        { metric: 'ledger signed appends/s (concurrent)', value: String(rate(concN, concMs)), target: '>= 30,000', met: (concN / concMs) * 1000 >= 30_000 },
        { metric: 'ledger prove one entry, ms', value: proveMs.toFixed(1), target: '< 10', met: proveMs < 10 },
        { metric: 'ledger verify-proof, ms', value: verifyProofMs.toFixed(1), target: '< 10', met: verifyProofMs < 10 },
        {
          metric: 'ledger verified entries/s',
          value: String(rate(v.stats.entries, verifyMs)),
          target: '>= 30,000',
          met: (v.stats.entries / verifyMs) * 1000 >= 30_000,
        },
        {
          metric: `ledger replicate ${(target + 1).toLocaleString('en')} entries, s`,
          value: (replMs / 1000).toFixed(1),
          target: '< 15',
          met: replMs < 15_000,
        },
        {
          metric: `ledger restore ${restoredN.toLocaleString('en')} own entries from a peer, s`,
          value: (restoreMs / 1000).toFixed(1),
          target: restoredN <= 100_001 ? '< 15' : '-',
          met: restoredN > 100_001 || restoreMs < 15_000,
        },
      ],
      notes: [
        `Ed25519 signatures checked by verify: ${v.stats.signaturesChecked} (one per feed head); replication batches of 512 entries, one signed head each.`,
        'The restore asks for 1,024 entries per request (the peer cuts each range at its last signed head within the message budget) and verifies every range as replication does: key bundle against the CA, hash chain, signed head, the checkpoint that comes with it; messages up to 1 MiB here as in the replication row (the agent caps them at 63 KiB, its relay frame size).',
        'Every append batch also writes the Merkle nodes it completes and a signed C2SP checkpoint (two Ed25519 signatures per batch: head and checkpoint).',
        'Replication runs with both agents as witnesses: each range carries a checkpoint the replica cosigns (cosignature/v1, after a consistency proof from the last one it cosigned) and sends back.',
        'For the 1,000,000-entry rows: npm run bench -- ledger 1000000 (minutes: the appends dominate).',
      ],
    },
  ];
}

/** Bytes the Merkle tree of one feed takes: stored key+value bytes of its nodes and checkpoint notes, and LevelDB's on-disk estimate after compaction. */
async function treeStorage(
  store: Store,
  feed: string,
  size: number,
): Promise<{ nodes: number; nodeBytesPerEntry: number; noteBytesPerEntry: number; diskBytesPerEntry: number }> {
  let nodes = 0;
  let nodeBytes = 0;
  for await (const [k, v] of store.tree.iterator({ gte: `${feed}!`, lt: `${feed}"` })) {
    nodes++;
    nodeBytes += Buffer.byteLength(`!m!${k}`) + v.length;
  }
  let noteBytes = 0;
  for await (const [k, v] of store.notes.iterator({ gte: `${feed}!`, lt: `${feed}"` })) noteBytes += Buffer.byteLength(`!n!${k}`) + Buffer.byteLength(v);
  const db = store.db as unknown as { compactRange(a: string, b: string): Promise<void>; approximateSize(a: string, b: string): Promise<number> };
  await db.compactRange('!m!', '!m"');
  const disk = await db.approximateSize('!m!', '!m"');
  return { nodes, nodeBytesPerEntry: nodeBytes / size, noteBytesPerEntry: noteBytes / size, diskBytesPerEntry: disk / size };
}
