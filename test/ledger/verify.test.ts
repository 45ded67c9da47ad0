import { expect } from 'chai';
import { cpSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import { createKeyBundle, generateAgentKeys, loadIdentity, parseCrl, type ParsedCrl } from '../../certs/index.ts';
import { Ledger, levelSource, verifyLedger, type Trust, type VerifyResult, type SignedHead } from '../../ledger/index.ts';
import { feedKey, Store } from '../../ledger/store.ts';
import { signHead } from '../../ledger/heads.ts';
import { leafHash, merkleRoot } from '../../ledger/merkle.ts';
import { checkpointOrigin, parseCheckpoint, signCheckpointNote } from '../../ledger/note.ts';
import { makeFederation, type TestFederation } from '../support/federation.ts';
import { readFileSync } from 'node:fs';
import { tempDir } from '../support/tmp.ts';
import { buildStory, contentHash, dbPath, makeWorld, patientHmac, type LedgerWorld } from './support.ts';

/** Seq of the newest entry of alpha's feed in the story. */
const LAST = 11;

describe('verifyLedger', function () {
  let tmp: { dir: string; cleanup: () => void };
  let world: LedgerWorld;
  let story: string;
  let n = 0;

  before(async () => {
    tmp = tempDir('hie-ledger-verify-');
    world = await makeWorld(tmp.dir);
    story = await buildStory(world, tmp.dir);
  });
  after(() => tmp.cleanup());

  const copy = (): string => {
    const p = dbPath(tmp.dir, `copy-${n++}`);
    cpSync(story, p, { recursive: true });
    return p;
  };
  const verifyAt = async (path: string, caPem = world.caPem): Promise<VerifyResult> => {
    const store = await Store.open(path, { createIfMissing: false });
    try {
      return await verifyLedger(levelSource(store), { trust: { caPem } });
    } finally {
      await store.close();
    }
  };
  const rootOf = async (path: string, size: number): Promise<string> => {
    const leaves: Buffer[] = [];
    await withStore(path, async (s) => {
      for await (const v of s.entries.values({ gte: feedKey('alpha', 0), lt: feedKey('alpha', size) })) leaves.push(leafHash(v));
    });
    return merkleRoot(leaves).toString('hex');
  };
  const rules = (r: VerifyResult): string[] => [...new Set(r.findings.map((f) => f.rule))].sort();
  const withStore = async (path: string, fn: (s: Store) => Promise<void>): Promise<void> => {
    const s = await Store.open(path, { createIfMissing: false });
    try {
      await fn(s);
    } finally {
      await s.close();
    }
  };

  it('finds nothing wrong in a consistent two-feed ledger', async () => {
    const r = await verifyAt(copy());
    expect(r.findings).to.deep.equal([]);
    expect(r.ok).to.equal(true);
    expect(r.stats.feeds).to.equal(2);
    expect(r.stats.entries).to.be.greaterThan(12);
  });

  it('holds every stored tlog checkpoint against the tree of the stored entries (tree.checkpoint)', async () => {
    const key = world.agents.alpha?.signingKey as NonNullable<typeof world.agents.alpha>['signingKey'];
    const origin = checkpointOrigin(world.caPem, 'alpha');
    // A validly signed checkpoint naming another root: the entries were altered or the feed forked.
    const forked = copy();
    await withStore(forked, (s) => s.notes.put(feedKey('alpha', 5), signCheckpointNote({ origin, size: 5, root: Buffer.alloc(32, 9) }, key)));
    const f = (await verifyAt(forked)).findings.filter((x) => x.rule === 'tree.checkpoint');
    expect(f.map((x) => x.detail)).to.deep.equal([
      `validly signed checkpoint of size 5 names root ${'09'.repeat(8)}..., the stored entries make ${(await rootOf(forked, 5)).slice(0, 16)}... (entries altered or feed forked)`,
    ]);
    // The newest checkpoint re-signed by another key (same root).
    const resigned = copy();
    const other = generateKeyPairSync('ed25519').privateKey;
    const size = LAST + 1;
    await withStore(resigned, async (s) => {
      const note = (await s.notes.get(feedKey('alpha', size))) as string;
      const cp = parseCheckpoint(note.slice(0, note.lastIndexOf('\n\n') + 1));
      await s.notes.put(feedKey('alpha', size), signCheckpointNote(cp, other));
    });
    expect(rules(await verifyAt(resigned))).to.deep.equal(['tree.checkpoint']);
    // A checkpoint of another federation's origin, and garbage.
    const foreign = copy();
    await withStore(foreign, async (s) => {
      await s.notes.put(feedKey('alpha', 3), signCheckpointNote({ origin: 'hie.federation/0000000000000000/alpha', size: 3, root: Buffer.alloc(32) }, key));
      await s.notes.put(feedKey('alpha', 4), 'not a note');
    });
    expect((await verifyAt(foreign)).findings.filter((x) => x.rule === 'tree.checkpoint')).to.have.length(2);
  });

  it('catches a rewrite of any byte of a stored entry (chain.link, entry.schema or head.mismatch)', async () => {
    const p = copy();
    await withStore(p, async (s) => {
      for (const [seq, last] of [
        [3, false],
        [LAST, true],
      ] as const) {
        const key = feedKey('alpha', seq);
        const original = (await s.entries.get(key)) as Buffer;
        const step = Math.max(1, Math.floor(original.length / 9));
        for (let i = 0; i < original.length; i += step) {
          const bad = Buffer.from(original);
          bad[i] = bad[i] === 0x41 ? 0x42 : 0x41;
          await s.entries.put(key, bad);
          const r = await verifyLedger(levelSource(s), { trust: { caPem: world.caPem } });
          expect(r.ok, `byte ${i} of entry ${seq}`).to.equal(false);
          const expected = last ? ['head.mismatch', 'head.signature', 'entry.schema'] : ['chain.link', 'entry.schema'];
          expect(
            r.findings.some((f) => f.feed === 'alpha' && expected.includes(f.rule)),
            JSON.stringify(r.findings),
          ).to.equal(true);
        }
        await s.entries.put(key, original);
      }
      const clean = await verifyLedger(levelSource(s), { trust: { caPem: world.caPem } });
      expect(clean.findings).to.deep.equal([]);
    });
  });

  it('catches a deleted entry (seq.gap) and a deleted newest entry (head.beyond)', async () => {
    const p = copy();
    await withStore(p, (s) => s.entries.del(feedKey('alpha', 4)));
    const r = await verifyAt(p);
    expect(rules(r)).to.include('seq.gap');
    expect(r.findings.find((f) => f.rule === 'seq.gap')).to.include({ feed: 'alpha', seq: 4 });

    const q = copy();
    await withStore(q, (s) => s.entries.del(feedKey('alpha', LAST)));
    expect(rules(await verifyAt(q))).to.include('head.beyond');
  });

  it('catches reordered entries (entry.seq and chain.link)', async () => {
    const p = copy();
    await withStore(p, async (s) => {
      const a = (await s.entries.get(feedKey('alpha', 5))) as Buffer;
      const b = (await s.entries.get(feedKey('alpha', 6))) as Buffer;
      await s.entries.put(feedKey('alpha', 5), b);
      await s.entries.put(feedKey('alpha', 6), a);
    });
    const r = await verifyAt(p);
    expect(rules(r)).to.include.members(['entry.seq', 'chain.link']);
  });

  it('catches a head re-signed with another key (head.signature)', async () => {
    const p = copy();
    const other = world.agents['bravo'];
    await withStore(p, async (s) => {
      const top = JSON.parse((await s.signedHeads.get(feedKey('alpha', LAST))) as string) as SignedHead;
      const forged = signHead({ feed: top.feed, seq: top.seq, hash: top.hash, ts: top.ts }, other!.signingKey, other!.bundle.signing.kid);
      await s.signedHeads.put(feedKey('alpha', LAST), JSON.stringify(forged));
    });
    expect(rules(await verifyAt(p))).to.deep.equal(['head.signature']);

    // Same key id, wrong key: the signature itself fails.
    const q = copy();
    await withStore(q, async (s) => {
      const top = JSON.parse((await s.signedHeads.get(feedKey('alpha', LAST))) as string) as SignedHead;
      const forged = signHead({ feed: top.feed, seq: top.seq, hash: top.hash, ts: top.ts }, generateKeyPairSync('ed25519').privateKey, top.kid);
      await s.signedHeads.put(feedKey('alpha', LAST), JSON.stringify(forged));
    });
    expect(rules(await verifyAt(q))).to.deep.equal(['head.signature']);
  });

  it('catches a history rewritten consistently and re-signed with another key', async () => {
    const p = copy();
    const other = world.agents['bravo']!;
    await withStore(p, async (s) => {
      // Drop everything after seq 2 and append a forged entry that links correctly.
      for (let seq = 3; seq <= LAST; seq++) {
        await s.entries.del(feedKey('alpha', seq));
        await s.signedHeads.del(feedKey('alpha', seq));
      }
      const { createHash } = await import('node:crypto');
      const { jcs } = await import('../../certs/index.ts');
      const prev = createHash('sha256')
        .update((await s.entries.get(feedKey('alpha', 2))) as Buffer)
        .digest('hex');
      const entry = {
        v: 1,
        feed: 'alpha',
        seq: 3,
        prev,
        ts: new Date().toISOString(),
        type: 'exchange.failed',
        body: { exchange: 'exchange-9999', peer: 'bravo', reason: 'timeout' },
        refs: [],
      };
      const bytes = jcs(entry);
      await s.entries.put(feedKey('alpha', 3), bytes);
      const hash = createHash('sha256').update(bytes).digest('hex');
      await s.signedHeads.put(
        feedKey('alpha', 3),
        JSON.stringify(signHead({ feed: 'alpha', seq: 3, hash, ts: entry.ts }, other.signingKey, other.bundle.signing.kid)),
      );
    });
    expect(rules(await verifyAt(p))).to.include('head.signature');
  });

  it('refuses keys not bound to the trusted CA (key.bundle)', async () => {
    const other = makeFederation(`${tmp.dir}/other-ca`, ['zulu']);
    const r = await verifyAt(copy(), readFileSync(other.caPath, 'utf8'));
    expect(rules(r)).to.include('key.bundle');
    expect(r.ok).to.equal(false);
  });

  it('applies the cross-feed rules: receipts, hashes, consent and charges', async () => {
    const path = dbPath(tmp.dir, 'cross');
    const charlie = await world.open('charlie', path);
    const t0 = new Date(Date.now() - 7_200_000).toISOString();
    const sent = (exchange: string, consent: string, extra: Partial<{ to: string; patient: string; purpose: 'TREAT' | 'HRESCH' }> = {}) =>
      charlie.append({
        type: 'exchange.sent',
        body: {
          exchange,
          to: extra.to ?? 'bravo',
          consent,
          patient: extra.patient ?? patientHmac(7),
          purpose: extra.purpose ?? 'TREAT',
          contentType: 'application/pdf',
          bytes: 10,
          hash: contentHash(7),
        },
      });
    await sent('exchange-nocons', 'consent-unknown');
    await charlie.append({
      type: 'consent.granted',
      body: { consent: 'consent-c001', patient: patientHmac(7), grantees: ['bravo'], purposes: ['TREAT'], scope: ['DiagnosticReport'], validFrom: t0 },
    });
    await sent('exchange-scope1', 'consent-c001', { to: 'alpha' });
    await sent('exchange-scope2', 'consent-c001', { purpose: 'HRESCH' });
    await charlie.append({ type: 'receipt', body: { exchange: 'exchange-scope2', from: 'bravo', disposition: 'delivered', hash: contentHash(8) } });
    await charlie.append({ type: 'consent.revoked', body: { consent: 'consent-c001', reason: 'patient-request' } });
    await sent('exchange-revoked', 'consent-c001');
    await charlie.append({
      type: 'payment.charged',
      body: { charge: 'charge-c001', exchange: 'exchange-ghost', kind: 'transport', payer: 'charlie', payee: 'relay', amount: 5, currency: 'USD' },
    });
    await charlie.append({
      type: 'payment.charged',
      body: { charge: 'charge-c002', exchange: 'exchange-scope2', kind: 'release', payer: 'alpha', payee: 'charlie', amount: 5, currency: 'USD' },
    });
    await charlie.append({
      type: 'payment.settled',
      body: {
        settlement: 'settle-c001',
        payer: 'alpha',
        payee: 'charlie',
        amount: 7,
        currency: 'USD',
        periodStart: t0,
        periodEnd: new Date(Date.now() + 60_000).toISOString(),
      },
    });
    await charlie.close();
    const store = await Store.open(path);
    try {
      const fresh = await verifyLedger(levelSource(store), { trust: { caPem: world.caPem } });
      const by = (rule: string) => fresh.findings.filter((f) => f.rule === rule).map((f) => f.seq);
      expect(by('consent.missing')).to.deep.equal([1]);
      expect(by('consent.scope')).to.deep.equal([3, 4]);
      expect(by('consent.revoked')).to.deep.equal([7]);
      expect(by('exchange.hash')).to.deep.equal([5]);
      expect(by('charge.exchange')).to.deep.equal([8, 9]);
      expect(by('settlement.balance')).to.deep.equal([10]);
      expect(by('exchange.unanswered')).to.deep.equal([]);
      const later = await verifyLedger(levelSource(store), { trust: { caPem: world.caPem }, now: new Date(Date.now() + 7_200_000) });
      expect(later.findings.filter((f) => f.rule === 'exchange.unanswered').map((f) => f.seq)).to.deep.equal([1, 3, 7]);
      // A per-finding detail never carries the patient HMAC.
      expect(JSON.stringify(later.findings)).not.to.contain(patientHmac(7));
    } finally {
      await store.close();
    }
  });

  it('counts a cancel as the answer to a release, and reports a cancelled exchange that was delivered anyway (exchange.cancelled)', async () => {
    const path = dbPath(tmp.dir, 'cancelled');
    const delta = await world.open('charlie', path);
    const t0 = new Date(Date.now() - 7_200_000).toISOString();
    await delta.append({
      type: 'consent.granted',
      body: { consent: 'consent-d001', patient: patientHmac(7), grantees: ['bravo'], purposes: ['TREAT'], scope: ['*'], validFrom: t0 },
    });
    const sent = (exchange: string) =>
      delta.append({
        type: 'exchange.sent',
        body: {
          exchange,
          to: 'bravo',
          consent: 'consent-d001',
          patient: patientHmac(7),
          purpose: 'TREAT',
          contentType: 'application/pdf',
          bytes: 10,
          hash: contentHash(7),
        },
      });
    await sent('exchange-cancel1');
    await delta.append({ type: 'exchange.cancelled', body: { exchange: 'exchange-cancel1', peer: 'bravo' } });
    await sent('exchange-cancel2');
    await delta.append({ type: 'exchange.cancelled', body: { exchange: 'exchange-cancel2', peer: 'bravo' } });
    await delta.append({ type: 'receipt', body: { exchange: 'exchange-cancel2', from: 'bravo', disposition: 'delivered', hash: contentHash(7) } });
    await delta.close();
    const store = await Store.open(path);
    try {
      const later = await verifyLedger(levelSource(store), { trust: { caPem: world.caPem }, now: new Date(Date.now() + 7_200_000) });
      const by = (rule: string) => later.findings.filter((f) => f.rule === rule).map((f) => f.seq);
      expect(by('exchange.unanswered')).to.deep.equal([]);
      expect(by('exchange.cancelled')).to.deep.equal([5]);
    } finally {
      await store.close();
    }
  });

  it('follows a key rotation and refuses a head signed by the retired key', async () => {
    const path = dbPath(tmp.dir, 'rotate');
    const ledger = await world.open('alpha', path);
    await ledger.append({ type: 'exchange.failed', body: { exchange: 'exchange-r001', peer: 'bravo', reason: 'timeout' } });
    const next = await world.newKeys('alpha');
    await ledger.rotateKey(next.signingKey, next.bundle);
    const r = await ledger.append({ type: 'exchange.failed', body: { exchange: 'exchange-r002', peer: 'bravo', reason: 'timeout' } });
    await ledger.close();
    // Reopen with the new key works; the old key is refused.
    const again = await world.open(undefined, path, { author: { feed: 'alpha', signingKey: next.signingKey, bundle: next.bundle } });
    await again.close();
    expect(rules(await verifyAt(path))).to.deep.equal([]);
    await withStore(path, async (s) => {
      const old = world.agents['alpha']!;
      const forged = signHead({ feed: 'alpha', seq: r.seq, hash: r.hash, ts: r.ts }, old.signingKey, old.bundle.signing.kid);
      await s.signedHeads.put(feedKey('alpha', r.seq), JSON.stringify(forged));
    });
    expect(rules(await verifyAt(path))).to.deep.equal(['head.signature']);
  });
});

/**
 * The live fault: a head signed at hh:mm:20.127 whose certificate was revoked
 * at hh:mm:20.380 is listed by the CRL as revoked at hh:mm:20 (X.509 times are
 * whole seconds); comparing that with the head's milliseconds reported
 * head.key-validity on every peer, for good.
 */
describe('verifyLedger at the one-second resolution of X.509 times', function () {
  let tmp: { dir: string; cleanup: () => void };
  let fed: TestFederation;
  let caPem: string;
  /** A whole second comfortably inside every certificate's validity. */
  let S: number;
  let n = 0;

  before(() => {
    tmp = tempDir('hie-ledger-verify-second-');
    fed = makeFederation(tmp.dir, []);
    caPem = readFileSync(fed.caPath, 'utf8');
    S = Math.floor(Date.now() / 1000) * 1000 + 10_000;
  });
  after(() => tmp.cleanup());

  /** A fresh hospital whose ledger has its genesis at S - 4 s and one entry (and head) signed at `headAt`. */
  const feedSignedAt = async (headAt: number, cert: { days?: number; notBefore?: Date } = {}): Promise<{ id: string; path: string }> => {
    const id = `second-${n++}`;
    const identity = loadIdentity(fed.addAgent(id, cert));
    const keys = generateAgentKeys();
    const bundle = await createKeyBundle(identity, keys, { now: new Date(S - 5000) });
    let clock = S - 4000;
    const path = dbPath(tmp.dir, id);
    const ledger = await Ledger.open({
      path,
      trust: { caPem },
      author: { feed: id, signingKey: keys.signing.privateKey, bundle },
      now: () => new Date(clock),
    });
    clock = headAt;
    await ledger.append({ type: 'exchange.failed', body: { exchange: `exchange-${id}`, peer: 'bravo', reason: 'timeout' } });
    expect((await ledger.signedHead())?.ts).to.equal(new Date(headAt).toISOString());
    await ledger.close();
    return { id, path };
  };
  const verifyWith = async (path: string, trust: Trust): Promise<VerifyResult> => {
    const store = await Store.open(path, { createIfMissing: false });
    try {
      return await verifyLedger(levelSource(store), { trust, now: new Date(S + 60_000) });
    } finally {
      await store.close();
    }
  };
  const rulesOf = (r: VerifyResult): string[] => [...new Set(r.findings.map((f) => f.rule))].sort();
  const revoke = (id: string, at: number): ParsedCrl => {
    fed.ca.revoke({ id, now: new Date(at) });
    return parseCrl(readFileSync(fed.crlPath, 'utf8'), caPem);
  };

  it('verifies a head signed in the same second as, but before, its certificate revocation (the live fault)', async () => {
    const { id, path } = await feedSignedAt(S + 127);
    const crl = revoke(id, S + 380);
    expect(crl.revoked.get(fed.ca.list().find((c) => c.id === id)!.serial)?.revokedAt.getTime()).to.equal(S);
    expect(rulesOf(await verifyWith(path, { caPem, crl }))).to.deep.equal([]);
    expect(rulesOf(await verifyWith(path, { caPem, crl, revocationTimes: fed.ca.revocationTimes() }))).to.deep.equal([]);
  });

  it('a peer ingests a head signed in the same second as, but before, its certificate revocation', async () => {
    const { id, path } = await feedSignedAt(S + 127);
    const crl = revoke(id, S + 380);
    const author = await Ledger.open({ path, trust: { caPem, crl } });
    const peer = await Ledger.open({ path: dbPath(tmp.dir, `${id}-peer`), trust: { caPem, crl } });
    try {
      const head = (await author.signedHead(id)) as SignedHead;
      expect(await peer.ingest(id, await author.rawRange(id, 0, head.seq), head)).to.deep.equal({ stored: 2 });
    } finally {
      await peer.close();
      await author.close();
    }
  });

  it('refuses a head signed in the second after its certificate revocation (head.key-validity)', async () => {
    const { id, path } = await feedSignedAt(S + 1000);
    const crl = revoke(id, S + 380);
    expect(rulesOf(await verifyWith(path, { caPem, crl }))).to.deep.equal(['head.key-validity']);
  });

  it('accepts a head signed later in the revocation second from the CRL alone, and refuses it when the exact revocation time is known', async () => {
    const { id, path } = await feedSignedAt(S + 999);
    const crl = revoke(id, S + 380);
    expect(rulesOf(await verifyWith(path, { caPem, crl }))).to.deep.equal([]);
    expect(rulesOf(await verifyWith(path, { caPem, crl, revocationTimes: fed.ca.revocationTimes() }))).to.deep.equal(['head.key-validity']);
  });

  it("verifies a head signed within the certificate's notAfter second and refuses one of the second after", async () => {
    // notAfter is S + 10.5 s in the CA's index, S + 10 s in the certificate; the bundle runs to the end of that second.
    const cert = { days: 1, notBefore: new Date(S + 10_500 - 86_400_000) };
    const within = await feedSignedAt(S + 10_500, cert);
    expect(rulesOf(await verifyWith(within.path, { caPem }))).to.deep.equal([]);
    const after = await feedSignedAt(S + 11_000, cert);
    expect(rulesOf(await verifyWith(after.path, { caPem }))).to.deep.equal(['head.key-validity']);
  });
});
