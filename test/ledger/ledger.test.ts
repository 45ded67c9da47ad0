import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash, verify as edVerify } from 'node:crypto';
import { decodeEntry, Ledger, levelSource, verifyHeadSignature, verifyLedger, withSnapshotSource, type AppendInput } from '../../ledger/index.ts';
import { feedKey } from '../../ledger/store.ts';
import { tempDir } from '../support/tmp.ts';
import { contentHash, dbPath, makeWorld, patientHmac, type LedgerWorld } from './support.ts';

describe('Ledger', function () {
  let tmp: { dir: string; cleanup: () => void };
  let world: LedgerWorld;
  let n = 0;
  before(async () => {
    tmp = tempDir('hie-ledger-core-');
    world = await makeWorld(tmp.dir);
  });
  after(() => tmp.cleanup());
  const fresh = (id = 'alpha') => world.open(id, dbPath(tmp.dir, `l${n++}`));
  // Integrity findings only: these tests log releases without the consent story the cross-feed rules want.
  const clean = async (l: Ledger) =>
    (await verifyLedger(levelSource(l._store), { trust: { caPem: world.caPem } })).findings.filter(
      (f) => !/^(consent|exchange|charge|settlement)\./.test(f.rule),
    );
  const sent = (exchange: string): AppendInput => ({
    type: 'exchange.sent',
    body: {
      exchange,
      to: 'bravo',
      consent: 'consent-0001',
      patient: patientHmac(1),
      purpose: 'TREAT',
      contentType: 'application/fhir+json',
      bytes: 10,
      hash: contentHash(1),
    },
  });

  it('writes a genesis entry carrying the key bundle and hashes the exact stored bytes', async () => {
    const l = await fresh();
    const g = (await l.get('alpha', 0))!;
    expect(g.entry.type).to.equal('genesis');
    expect((g.entry.body as { bundle: { agent: string } }).bundle.agent).to.equal('alpha');
    expect(g.hash).to.equal(createHash('sha256').update(g.bytes).digest('hex'));
    const r = await l.append(sent('exchange-0001'));
    const e = (await l.get('alpha', 1))!;
    expect(e.entry.prev).to.equal(g.hash);
    expect(r.hash).to.equal(e.hash);
    await l.close();
  });

  it('refuses bodies that break the schema: unknown fields, free text, floats, clear patient ids', async () => {
    const l = await fresh();
    const bad = async (input: unknown) =>
      l.append(input as AppendInput).then(
        () => 'accepted',
        (e: { code?: string; name: string }) => e.code ?? e.name,
      );
    const base = sent('exchange-0002').body as Record<string, unknown>;
    expect(await bad({ type: 'exchange.sent', body: { ...base, note: 'patient John Doe, 1970-01-01' } })).to.equal('ERR_LEDGER_INVALID_ENTRY');
    expect(await bad({ type: 'exchange.sent', body: { ...base, patient: 'MRN-12345' } })).to.equal('ERR_LEDGER_INVALID_ENTRY');
    expect(await bad({ type: 'exchange.sent', body: { ...base, exchange: 'John Doe' } })).to.equal('ERR_LEDGER_INVALID_ENTRY');
    expect(
      await bad({
        type: 'payment.charged',
        body: { charge: 'charge-0001', exchange: 'exchange-0002', kind: 'release', payer: 'bravo', payee: 'alpha', amount: 2.5, currency: 'EUR' },
      }),
    ).to.equal('ERR_LEDGER_INVALID_ENTRY');
    expect(
      await bad({
        type: 'payment.charged',
        body: { charge: 'charge-0001', exchange: 'exchange-0002', kind: 'release', payer: 'bravo', payee: 'alpha', amount: 250, currency: 'euro' },
      }),
    ).to.equal('ERR_LEDGER_INVALID_ENTRY');
    expect(await bad({ type: 'exchange.failed', body: { exchange: 'exchange-0002', peer: 'bravo', reason: 'the patient was angry' } })).to.equal(
      'ERR_LEDGER_INVALID_ENTRY',
    );
    expect(await bad({ type: 'genesis', body: {} })).to.equal('TypeError');
    expect(await bad({ type: 'no.such', body: {} })).to.equal('ERR_LEDGER_INVALID_ENTRY');
    expect(l.head()?.seq).to.equal(0);
    await l.close();
  });

  it('verifies clean while it is being written, read through one snapshot', async () => {
    const l = await fresh();
    for (let i = 0; i < 200; i++) await l.append(sent(`exchange-snap-${String(i).padStart(4, '0')}`));
    let writing = true;
    let appended = 0;
    const writer = (async () => {
      while (writing) {
        await l.append(sent(`exchange-live-${String(appended).padStart(6, '0')}`));
        appended += 1;
      }
    })();
    try {
      // Several passes, each racing the writer: without the snapshot, a head read after the entries names one never seen (head.beyond).
      for (let pass = 0; pass < 5; pass++) {
        const r = await withSnapshotSource(l._store, (source) => verifyLedger(source, { trust: { caPem: world.caPem } }));
        expect(
          r.findings.filter((f) => !/^(consent|exchange|charge|settlement)\./.test(f.rule)),
          `pass ${pass}`,
        ).to.deep.equal([]);
      }
    } finally {
      writing = false;
      await writer;
    }
    expect(appended, 'the ledger was written during the passes').to.be.greaterThan(0);
    await l.close();
  });

  it('serializes concurrent appends in call order, one signed head per batch', async () => {
    const l = await fresh();
    const results = await Promise.all(Array.from({ length: 300 }, (_, i) => l.append(sent(`exchange-${String(i).padStart(6, '0')}`))));
    expect(results.map((r) => r.seq)).to.deep.equal(Array.from({ length: 300 }, (_, i) => i + 1));
    for (const r of results.slice(0, 5)) {
      expect((decodeEntry((await l.rawRange('alpha', r.seq, r.seq))[0]!).entry.body as { exchange: string }).exchange).to.equal(
        `exchange-${String(r.seq - 1).padStart(6, '0')}`,
      );
    }
    expect((await l.signedHead())?.seq).to.equal(300);
    expect(await clean(l)).to.deep.equal([]);
    await l.close();
  });

  it('indexes entries by exchange, consent and type', async () => {
    const l = await fresh();
    await l.append({
      type: 'consent.granted',
      body: { consent: 'consent-0001', patient: patientHmac(1), grantees: ['bravo'], purposes: ['TREAT'], scope: ['*'], validFrom: new Date().toISOString() },
    });
    await l.append(sent('exchange-0003'));
    await l.append({ type: 'exchange.failed', body: { exchange: 'exchange-0003', peer: 'bravo', reason: 'timeout' } });
    expect((await l.byExchange('exchange-0003')).map((e) => e.entry.type)).to.deep.equal(['exchange.sent', 'exchange.failed']);
    expect((await l.byConsent('consent-0001')).map((e) => e.entry.seq)).to.deep.equal([1, 2]);
    expect((await l.byType('exchange.failed', 'alpha')).map((e) => e.entry.seq)).to.deep.equal([3]);
    await l.close();
  });

  it("finds a consent's grant in one feed among the exchanges that name the consent, and nothing for another feed", async () => {
    const l = await fresh();
    for (let i = 0; i < 3; i++) await l.append(sent(`exchange-g${String(i).padStart(6, '0')}`));
    await l.append({
      type: 'consent.granted',
      body: { consent: 'consent-0001', patient: patientHmac(1), grantees: ['bravo'], purposes: ['TREAT'], scope: ['*'], validFrom: new Date().toISOString() },
    });
    await l.append(sent('exchange-g000003'));
    const granted = await l.consentGranted('consent-0001', 'alpha');
    expect(granted?.entry.type).to.equal('consent.granted');
    expect(granted?.entry.seq).to.equal(4);
    expect(granted).to.deep.equal((await l.byConsent('consent-0001')).find((e) => e.entry.type === 'consent.granted' && e.entry.feed === 'alpha'));
    expect(await l.consentGranted('consent-0001', 'bravo')).to.equal(undefined);
    expect(await l.consentGranted('consent-0002', 'alpha')).to.equal(undefined);
    await l.close();
  });

  it('proves one entry with the chain up to a signed head', async () => {
    const l = await fresh();
    for (let i = 0; i < 5; i++) await l.append(sent(`exchange-p${String(i).padStart(6, '0')}`));
    const proof = (await l.proof('alpha', 2))!;
    let hash = '';
    for (const [i, b] of proof.entries.entries()) {
      const e = decodeEntry(b);
      if (i > 0) expect(e.entry.prev).to.equal(hash);
      hash = e.hash;
    }
    expect(hash).to.equal(proof.head.hash);
    const { createPublicKey } = await import('node:crypto');
    expect(verifyHeadSignature(proof.head, createPublicKey(world.agents['alpha']!.signingKey))).to.equal(true);
    expect(edVerify).to.be.a('function');
    await l.close();
  });

  it('refuses to reopen an author feed with another key', async () => {
    const path = dbPath(tmp.dir, `l${n++}`);
    await (await world.open('alpha', path)).close();
    const other = await world.newKeys('alpha');
    const err = await Ledger.open({ path, trust: { caPem: world.caPem }, author: { feed: 'alpha', signingKey: other.signingKey, bundle: other.bundle } }).catch(
      (e: { code: string }) => e.code,
    );
    expect(err).to.equal('ERR_LEDGER_KEY_MISMATCH');
  });

  it('reports damaged stored heads, signed heads and checkpoints as ERR_LEDGER_DB_UNREADABLE, not a SyntaxError', async () => {
    const path = dbPath(tmp.dir, `l${n++}`);
    const l = await world.open('alpha', path);
    await l.append(sent('exchange-d0000001'));
    await l.checkpoint();
    const code = (p: Promise<unknown>) =>
      p.then(
        () => 'ok',
        (e: { code?: string; name?: string }) => e.code ?? e.name,
      );
    const s = l._store;
    const head = l.head() as { seq: number };
    await s.signedHeads.put(feedKey('alpha', head.seq), '{"seq": 1, tr');
    expect(await code(l.signedHead())).to.equal('ERR_LEDGER_DB_UNREADABLE');
    await s.signedHeads.put(feedKey('alpha', head.seq), '{"seq": "one"}');
    expect(await code(l.signedHead())).to.equal('ERR_LEDGER_DB_UNREADABLE');
    for await (const k of s.checkpoints.keys()) await s.checkpoints.put(k, 'not json');
    expect(await code(l.checkpoints())).to.equal('ERR_LEDGER_DB_UNREADABLE');
    await s.heads.put('alpha', '{"seq":');
    await l.close();
    expect(await code(Ledger.open({ path, trust: { caPem: world.caPem } }))).to.equal('ERR_LEDGER_DB_UNREADABLE');

    // A type index naming an entry of another type (it used to reach keyEraFromEntry's TypeError).
    const other = dbPath(tmp.dir, `l${n++}`);
    const m = await world.open('alpha', other);
    const r = await m.append(sent('exchange-d0000002'));
    await m._store.byType.put(`key.rotated!${feedKey('alpha', r.seq)}`, '');
    await m.close();
    expect(await code(Ledger.open({ path: other, trust: { caPem: world.caPem } }))).to.equal('ERR_LEDGER_DB_UNREADABLE');
  });

  it('loses nothing committed when a write fails between steps, and verifies clean', async () => {
    const l = await fresh();
    await l.append(sent('exchange-c0000001'));
    const store = l._store;
    const real = store.batch.bind(store);
    store.batch = async () => {
      throw new Error('disk full');
    };
    const failed = await l.append(sent('exchange-c0000002')).then(
      () => 'ok',
      (e: Error) => e.message,
    );
    expect(failed).to.equal('disk full');
    store.batch = real;
    expect(l.head()?.seq).to.equal(1);
    const r = await l.append(sent('exchange-c0000003'));
    expect(r.seq).to.equal(2);
    expect(await clean(l)).to.deep.equal([]);
    await l.close();
  });

  it('survives being killed mid-append: the database reopens and verifies clean', async function () {
    const path = dbPath(tmp.dir, 'crash');
    const a = world.agents['alpha']!;
    const keyPath = join(tmp.dir, 'alpha-signing.pem');
    const bundlePath = join(tmp.dir, 'alpha-bundle.json');
    writeFileSync(keyPath, a.signingKey.export({ format: 'pem', type: 'pkcs8' }));
    writeFileSync(bundlePath, JSON.stringify(a.bundle));
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join('test', 'ledger', 'fixtures', 'append-child.ts'), path, keyPath, bundlePath, world.fed.caPath],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let last = 0;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('child made no progress')), 30_000);
      child.stdout.on('data', (d: Buffer) => {
        last = Math.max(last, ...d.toString().trim().split('\n').map(Number));
        if (last >= 2000) {
          clearTimeout(timer);
          child.kill('SIGKILL');
          resolve();
        }
      });
    });
    await new Promise((r) => child.once('exit', r));
    const l = await world.open('alpha', path);
    expect(l.head()!.seq).to.be.at.least(last);
    expect(await clean(l)).to.deep.equal([]);
    const next = await l.append(sent('exchange-after-crash'));
    expect(next.seq).to.equal(l.head()!.seq);
    await l.close();
  });
});
