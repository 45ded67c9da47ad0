import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { jcs } from '../../certs/index.ts';
import { main } from '../../ledger/cli.ts';
import { join } from 'node:path';
import { countWitnesses, parseWitnessPolicy, type KnownWitness } from '../../ledger/policy.ts';
import { cosignerKey, witnessName } from '../../ledger/cosign.ts';
import {
  concerns,
  decodeEntry,
  FeedRecovery,
  isSealed,
  levelSource,
  MemoryNetwork,
  readSealed,
  Replicator,
  sealEntry,
  sealingKey,
  unsealEntry,
  verifyLedger,
  type Ledger,
  type ReplicationMode,
} from '../../ledger/index.ts';
import { Witness } from '../../ledger/witness.ts';
import { tempDir } from '../support/tmp.ts';
import { contentHash, dbPath, makeWorld, patientHmac, type LedgerWorld } from './support.ts';

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Every file under `dir`, concatenated: the database's raw bytes (logs, tables, manifest). */
function rawBytes(dir: string): Buffer {
  const parts: Buffer[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else parts.push(readFileSync(p));
    }
  };
  walk(dir);
  return Buffer.concat(parts);
}

async function rawFeed(ledger: Ledger, feed: string): Promise<Buffer[]> {
  const head = ledger.head(feed);
  return head ? ledger.rawRange(feed, 0, head.seq, head.seq + 1) : [];
}

describe('private replication (docs/replication.md)', function () {
  this.timeout(90_000);
  let tmp: { dir: string; cleanup: () => void };
  let world: LedgerWorld;
  const open: Ledger[] = [];
  const stops: Array<{ stop(): void }> = [];
  const ids = ['alpha', 'bravo', 'charlie'];

  before(async () => {
    tmp = tempDir('hie-ledger-private-');
    world = await makeWorld(tmp.dir);
  });
  afterEach(async () => {
    for (const r of stops.splice(0)) r.stop();
    for (const l of open.splice(0)) await l.close().catch(() => undefined);
  });
  after(() => tmp.cleanup());

  const openAs = async (id: string, name: string, recover = false): Promise<Ledger> => {
    const l = await world.open(id, dbPath(tmp.dir, name), { recover });
    open.push(l);
    return l;
  };
  const closeLedger = async (l: Ledger): Promise<void> => {
    open.splice(open.indexOf(l), 1);
    await l.close();
  };
  const known = (list: string[]): KnownWitness[] => list.map((id) => ({ id, ...cosignerKey(witnessName(world.caPem, id), world.agents[id]!.signingKey) }));

  /** Three hospitals replicate in `mode`; alpha releases one exchange to bravo under a consent naming bravo only. */
  async function story(prefix: string, mode: ReplicationMode) {
    const net = new MemoryNetwork();
    const ledgers: Record<string, Ledger> = {};
    const witnesses: Record<string, Witness> = {};
    const reps: Record<string, Replicator> = {};
    for (const id of ids) {
      ledgers[id] = await openAs(id, `${prefix}-${id}`);
      witnesses[id] = new Witness(ledgers[id]!, { id, signingKey: world.agents[id]!.signingKey });
      reps[id] = new Replicator(ledgers[id]!, net.endpoint(id), {
        peers: ids,
        gossipIntervalMs: 50,
        checkpointIntervalMs: 0,
        rangeEntries: 100,
        witness: witnesses[id]!,
        mode,
      });
      reps[id]!.start();
      stops.push(reps[id]!);
    }
    const alpha = ledgers['alpha']!;
    const bravo = ledgers['bravo']!;
    const exchange = `xch-${randomUUID()}`;
    const consent = `cns-${randomUUID()}`;
    const patient = patientHmac(Math.floor(Math.random() * 1e9));
    const hash = contentHash(7);
    const ts = new Date(Date.now() - 1000).toISOString();
    await alpha.append({
      type: 'consent.granted',
      body: { consent, patient, grantees: ['bravo'], purposes: ['TREAT'], scope: ['*'], validFrom: ts },
    });
    await alpha.append({
      type: 'exchange.sent',
      body: { exchange, to: 'bravo', consent, patient, purpose: 'TREAT', contentType: 'application/fhir+json', bytes: 1234, hash },
    });
    await bravo.append({ type: 'exchange.received', body: { exchange, from: 'alpha', contentType: 'application/fhir+json', bytes: 1234, hash } });
    await alpha.append({ type: 'receipt', body: { exchange, from: 'bravo', disposition: 'delivered', hash } });
    await alpha.append({
      type: 'payment.charged',
      body: { charge: `chg-${randomUUID()}`, exchange, kind: 'transport', payer: 'alpha', payee: 'bravo', amount: 5, currency: 'EUR' },
    });
    // Entries that concern charlie (it holds these in the clear).
    await alpha.append({ type: 'exchange.failed', body: { exchange: `xch-${randomUUID()}`, peer: 'charlie', reason: 'timeout' } });
    await bravo.append({ type: 'exchange.failed', body: { exchange: `xch-${randomUUID()}`, peer: 'charlie', reason: 'rejected' } });
    for (const f of ['alpha', 'bravo']) {
      const head = ledgers[f]!.head()!;
      for (const other of ids.filter((i) => i !== f)) await until(() => ledgers[other]!.head(f)?.hash === head.hash, `${other} to hold ${f}'s feed`);
    }
    return { net, ledgers, witnesses, reps, exchange, consent, patient };
  }

  it('in private mode a third hospital holds nothing readable of an exchange it was not party to, yet witnesses both feeds', async () => {
    const { ledgers, witnesses, exchange, consent, patient } = await story('p', 'private');
    const charlie = ledgers['charlie']!;
    // Charlie still cosigns both parties' checkpoints at their full size (its tree has every leaf).
    const policy1 = parseWitnessPolicy({ quorum: 1 });
    for (const f of ['alpha', 'bravo']) {
      const size = ledgers[f]!.treeSize(f);
      expect(charlie.treeSize(f)).to.equal(size);
      await until(async () => (await witnesses['charlie']!.lastCosigned(f))?.size === size, `charlie to cosign ${f}@${size}`);
      await until(async () => {
        const n = await witnesses[f]!.cosigned(f, size);
        return n !== undefined && countWitnesses(n, f, known(['charlie']), policy1).witnessed;
      }, `${f} to hold charlie's cosignature`);
    }
    // Through its own API: the exchange is not there, the feed's other entries are sealed records.
    expect(await charlie.byExchange(exchange)).to.deep.equal([]);
    expect(await charlie.byConsent(consent)).to.deep.equal([]);
    const alphaHeld = await rawFeed(charlie, 'alpha');
    expect(alphaHeld.filter(isSealed).length).to.equal(4);
    expect(decodeEntry(alphaHeld.at(-1)!).entry.type).to.equal('exchange.failed');
    // The parties verify clean; so does charlie, with no false finding from what it cannot read.
    for (const id of ids) {
      const v = await verifyLedger(levelSource(ledgers[id]!._store), { trust: { caPem: world.caPem } });
      expect(v.findings.map((f) => `${id}: ${f.feed}:${f.seq}:${f.rule} ${f.detail}`)).to.deep.equal([]);
      if (id === 'charlie') expect(v.stats.sealed).to.equal(5);
    }
    // Bravo, a party, holds the exchange readable (and nothing sealed of alpha's story).
    expect((await ledgers['bravo']!.byExchange(exchange)).map((e) => e.entry.type)).to.have.members([
      'exchange.sent',
      'exchange.received',
      'receipt',
      'payment.charged',
    ]);
    for (const id of ids) await closeLedger(ledgers[id]!);
    // hie-ledger verify on charlie's database says the same, and how much of it is sealed.
    writeFileSync(join(tmp.dir, 'ca.pem'), world.caPem);
    let out = '';
    const code = await main(['verify', '--data', dbPath(tmp.dir, 'p-charlie'), '--ca', join(tmp.dir, 'ca.pem')], { out: (t) => (out += t) });
    expect(code, out).to.equal(0);
    expect(out).to.match(/^OK: .*no findings \(5 of them sealed/);
    const needles = [exchange, patient, consent];
    const charlieRaw = rawBytes(dbPath(tmp.dir, 'p-charlie'));
    for (const n of needles) expect(charlieRaw.includes(n), `charlie's files hold ${n.slice(0, 8)}...`).to.equal(false);
    // The same search finds them in bravo's files: it would see them if they were there.
    const bravoRaw = rawBytes(dbPath(tmp.dir, 'p-bravo'));
    for (const n of needles) expect(bravoRaw.includes(n), `bravo's files hold ${n.slice(0, 8)}...`).to.equal(true);
  });

  it('restores an agent whose disk was lost from a peer that holds its feed only sealed', async () => {
    const { net, ledgers, reps } = await story('r', 'private');
    const alpha = ledgers['alpha']!;
    const bytes = await rawFeed(alpha, 'alpha');
    reps['alpha']!.stop();
    await closeLedger(alpha);
    rmSync(dbPath(tmp.dir, 'r-alpha'), { recursive: true, force: true });
    // Only charlie answers: bravo is out of reach.
    net.partition('alpha', 'bravo');
    const restored = await openAs('alpha', 'r-alpha', true);
    const recovery = new FeedRecovery(restored, net.endpoint('alpha'), { peers: ['charlie'], timeoutMs: 3_000 });
    stops.push(recovery);
    const outcome = await recovery.run();
    expect(outcome.state).to.equal('complete');
    expect(outcome.restored).to.equal(bytes.length);
    expect((await rawFeed(restored, 'alpha')).map((b) => b.toString('base64'))).to.deep.equal(bytes.map((b) => b.toString('base64')));
    const next = await restored.append({ type: 'exchange.failed', body: { exchange: `xch-${randomUUID()}`, peer: 'charlie', reason: 'timeout' } });
    expect(next.seq).to.equal(bytes.length);
    const v = await verifyLedger(levelSource(restored._store), { trust: { caPem: world.caPem } });
    expect(v.findings).to.deep.equal([]);
  });

  it('in full mode the third hospital holds the exchange in the clear, as before', async () => {
    const { ledgers, exchange, consent, patient } = await story('f', 'full');
    const charlie = ledgers['charlie']!;
    expect((await charlie.byExchange(exchange)).map((e) => e.entry.type)).to.have.members(['exchange.sent', 'exchange.received', 'receipt', 'payment.charged']);
    expect((await charlie.byConsent(consent)).length).to.be.greaterThan(0);
    expect((await rawFeed(charlie, 'alpha')).some(isSealed)).to.equal(false);
    const v = await verifyLedger(levelSource(charlie._store), { trust: { caPem: world.caPem } });
    expect(v.findings).to.deep.equal([]);
    await closeLedger(charlie);
    const raw = rawBytes(dbPath(tmp.dir, 'f-charlie'));
    for (const n of [exchange, patient, consent]) expect(raw.includes(n)).to.equal(true);
  });

  it('fits full ranges of sealed records in a message: a 2,000-entry feed reaches a replica party to none of it, nobody dropped', async () => {
    const alpha = await openAs('alpha', 'big-alpha');
    const charlie = await openAs('charlie', 'big-charlie');
    const all: Array<Promise<unknown>> = [];
    for (let i = 0; i < 2000; i++)
      all.push(
        alpha.append({
          type: 'exchange.received',
          body: { exchange: `big-${String(i).padStart(10, '0')}`, from: 'bravo', contentType: 'application/fhir+json', bytes: 1000 + i, hash: contentHash(i) },
        }),
      );
    await Promise.all(all);
    const net = new MemoryNetwork();
    const dropped: unknown[] = [];
    // Default range size (512) and message limit (1 MiB): 512 sealed records are larger than 512 entries.
    for (const [me, l, peer] of [
      ['alpha', alpha, 'charlie'],
      ['charlie', charlie, 'alpha'],
    ] as const) {
      const r = new Replicator(l, net.endpoint(me), { peers: [peer], gossipIntervalMs: 200, checkpointIntervalMs: 0, mode: 'private' });
      r.on('dropped', (d) => dropped.push(d));
      r.start();
      stops.push(r);
    }
    await until(() => charlie.head('alpha')?.seq === alpha.head()!.seq || dropped.length > 0, "charlie to hold alpha's feed");
    expect(dropped).to.deep.equal([]);
    const v = await verifyLedger(levelSource(charlie._store), { trust: { caPem: world.caPem } });
    expect(v.findings).to.deep.equal([]);
    expect(v.stats.sealed).to.equal(2000);
  });

  describe('sealed records', () => {
    it('open only under the author key, and refuse an altered record', async () => {
      const a = world.agents['alpha']!;
      const entry = Buffer.from('{"body":{},"feed":"alpha"}');
      const key = sealingKey(a.signingKey, 'alpha');
      const sealed = sealEntry(key, a.bundle.signing.kid, 'alpha', 3, entry);
      expect(isSealed(sealed)).to.equal(true);
      expect(sealed.includes('"body"')).to.equal(false);
      const rec = readSealed(sealed);
      expect(jcs(rec).equals(sealed), 'sealed records are JCS').to.equal(true);
      expect(unsealEntry(key, rec).equals(entry)).to.equal(true);
      expect(() => unsealEntry(sealingKey(world.agents['bravo']!.signingKey, 'alpha'), rec)).to.throw(/does not open/);
      expect(() => unsealEntry(key, { ...rec, seq: 4 })).to.throw(/does not open/);
      // Padded: a short and a longer entry seal to ciphertexts of the same length.
      const longer = Buffer.concat([entry, Buffer.alloc(400, 0x20)]);
      expect(readSealed(sealEntry(key, a.bundle.signing.kid, 'alpha', 3, longer)).ct.length).to.equal(rec.ct.length);
      expect(unsealEntry(key, readSealed(sealEntry(key, a.bundle.signing.kid, 'alpha', 3, longer))).equals(longer)).to.equal(true);
      // Two seals of the same entry differ (fresh nonce): ciphertexts cannot be matched across peers.
      expect(sealEntry(key, a.bundle.signing.kid, 'alpha', 3, entry).equals(sealed)).to.equal(false);
    });

    it('concern rule: parties only; key entries concern everyone', () => {
      const e = (type: string, body: object) =>
        ({ v: 1, feed: 'alpha', seq: 1, prev: '0'.repeat(64), ts: '2026-01-01T00:00:00.000Z', type, body, refs: [] }) as never;
      expect(concerns(e('exchange.sent', { to: 'bravo' }), 'bravo')).to.equal(true);
      expect(concerns(e('exchange.sent', { to: 'bravo' }), 'charlie')).to.equal(false);
      expect(concerns(e('receipt', { from: 'bravo' }), 'bravo')).to.equal(true);
      expect(concerns(e('payment.charged', { payer: 'alpha', payee: 'charlie' }), 'charlie')).to.equal(true);
      expect(concerns(e('consent.granted', { grantees: ['bravo', 'delta'] }), 'delta')).to.equal(true);
      expect(concerns(e('consent.revoked', { consent: 'c1' }), 'bravo', () => ['bravo'])).to.equal(true);
      expect(concerns(e('consent.revoked', { consent: 'c1' }), 'charlie', () => ['bravo'])).to.equal(false);
      expect(concerns(e('genesis', {}), 'charlie')).to.equal(true);
    });
  });
});
