import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { expect } from 'chai';
import { Ledger } from '../../../ledger/index.ts';
import { createReceipt } from '../../../hospital-agent/crypto/index.ts';
import { ExchangeEngine, type RelayPort } from '../../../hospital-agent/engine/index.ts';
import { PeerDirectory } from '../../../hospital-agent/engine/peers.ts';
import { decodeTransferMeta } from '../../../hospital-agent/engine/wire.ts';
import { ConsentService } from '../../../hospital-agent/services/consents.ts';
import type { ExchangeStore, ExchangeRecord } from '../../../hospital-agent/store/exchanges.ts';
import { StateStore } from '../../../hospital-agent/store/state.ts';
import { Outbox } from '../../../hospital-agent/store/outbox.ts';
import type { VerifiedUsage } from '../../../relay/protocol/index.ts';
import { waitFor } from '../../support/agents.ts';
import { tempDir } from '../../support/tmp.ts';
import { getWorld, type World } from '../crypto/fixtures.ts';

/** A relay port whose transfers land in memory (what the recipient would get), with no usage statement. */
function memoryRelay(): RelayPort & { transfers: Array<{ to: string; meta: Buffer; bytes: Buffer; done: Promise<void> }> } {
  const transfers: Array<{ to: string; meta: Buffer; bytes: Buffer; done: Promise<void> }> = [];
  return {
    connected: true,
    transfers,
    openTransfer(to, options) {
      const parts: Buffer[] = [];
      let finish!: () => void;
      const entry = { to, meta: Buffer.from(options.meta ?? []), bytes: Buffer.alloc(0), done: new Promise<void>((r) => (finish = r)) };
      transfers.push(entry);
      const w = new Writable({
        write(chunk: Buffer, _e, cb) {
          parts.push(chunk);
          cb();
        },
        final(cb) {
          entry.bytes = Buffer.concat(parts);
          finish();
          cb();
        },
      });
      return Object.assign(w, { usage: new Promise<VerifiedUsage>(() => undefined) });
    },
  };
}

describe('ExchangeEngine: batch envelopes', function () {
  let w: World;
  let tmp: ReturnType<typeof tempDir>;
  let store: ExchangeStore;
  let state: StateStore;
  let ledger: Ledger;
  let consents: ConsentService;
  let engine: ExchangeEngine;
  let relay: ReturnType<typeof memoryRelay>;

  beforeEach(async function () {
    w = await getWorld();
    tmp = tempDir();
    const alpha = w.parties['alpha']!;
    state = new StateStore(join(tmp.dir, 'state'));
    await state.open();
    store = state.exchanges;
    ledger = await Ledger.open({
      path: join(tmp.dir, 'ledger'),
      trust: { caPem: w.caPem },
      author: { feed: 'alpha', signingKey: alpha.keys.signing.privateKey, bundle: alpha.bundle },
    });
    consents = new ConsentService(ledger, 'alpha', randomBytes(32));
    relay = memoryRelay();
    engine = new ExchangeEngine({
      self: 'alpha',
      store,
      outbox: new Outbox(join(tmp.dir, 'outbox')),
      consents,
      peers: new PeerDirectory(
        w.ring,
        () => alpha.bundle,
        () => undefined,
      ),
      ledger,
      relay,
      sender: () => alpha.sender,
      logger: { info() {}, warn() {}, error() {} },
      maxConcurrent: 4,
      receiptTimeoutMs: 30_000,
    });
  });
  afterEach(async function () {
    engine.stop();
    await ledger.close();
    await state.close();
    tmp.cleanup();
  });

  async function queue(n: number): Promise<ExchangeRecord[]> {
    const consent = await consents.grant({
      patientId: 'SYN-ENGINE',
      grantees: ['bravo'],
      purposes: ['TREAT'],
      scope: ['*'],
      validUntil: new Date(Date.now() + 86_400_000).toISOString(),
    });
    const out: ExchangeRecord[] = [];
    for (let i = 0; i < n; i += 1) {
      const body = Buffer.from(JSON.stringify({ resourceType: 'Bundle', type: 'collection', n: i }));
      const { record } = await store.create(
        {
          id: randomUUID(),
          to: 'bravo',
          patientHash: consent.patientHash,
          consentId: consent.id,
          purpose: 'TREAT',
          contentType: 'application/fhir+json',
          scope: ['*'],
          bytes: body.length,
          contentSha256: createHash('sha256').update(body).digest('hex'),
        },
        undefined,
        { body },
      );
      out.push(record);
    }
    return out;
  }

  it('seals the queued small exchanges to one recipient into one envelope, announcing their number to the recipient', async function () {
    const records = await queue(5);
    await engine.start();
    await waitFor(() => relay.transfers.length > 0, 10_000, 'a transfer');
    await relay.transfers[0]!.done;
    expect(relay.transfers).to.have.length(1);
    expect(decodeTransferMeta(relay.transfers[0]!.meta)?.n).to.equal(records.length);
    // Released once each before a byte left, and in memory as sending.
    for (const r of records) {
      expect((await ledger.byExchange(r.id)).filter((e) => e.entry.type === 'exchange.sent')).to.have.length(1);
      expect((await store.get(r.id))?.status).to.equal('sending');
    }
  });

  it('checks a small body read back from disk against its hash: a damaged one fails alone, the rest still travel', async function () {
    const [damaged, intact] = await queue(2);
    // As after a restart: nothing held in memory, so both bodies are read back from the state database.
    const internals = store as unknown as { bodyCache: Map<string, Buffer>; bodies: { put(k: string, v: Buffer): Promise<void> } };
    internals.bodyCache.clear();
    const original = await store.body(damaged!.id);
    internals.bodyCache.clear();
    const flipped = Buffer.from(original!);
    flipped[0] = flipped[0]! ^ 1;
    await internals.bodies.put(damaged!.id, flipped);
    await engine.start();
    await waitFor(async () => (await store.get(damaged!.id))?.status === 'failed', 10_000, 'the damaged exchange to fail');
    expect((await store.get(damaged!.id))?.failure?.code).to.equal('ERR_OUTBOX_MISSING');
    await waitFor(() => relay.transfers.length > 0, 10_000, 'a transfer');
    await relay.transfers[0]!.done;
    expect(decodeTransferMeta(relay.transfers[0]!.meta)?.n).to.equal(1);
    expect((await store.get(intact!.id))?.status).to.equal('sending');
  });

  it('fails every exchange of a batch the recipient refused as a whole, logging exchange.failed for each', async function () {
    const records = await queue(3);
    await engine.start();
    await waitFor(() => relay.transfers.length > 0, 10_000, 'a transfer');
    await relay.transfers[0]!.done;
    const batchId = decodeTransferMeta(relay.transfers[0]!.meta)?.x as string;
    // The recipient could not open it: its signed failed receipt names the batch.
    const refusal = createReceipt(
      { exchangeId: batchId, sender: 'alpha', headerHash: null, contentHash: null, disposition: { failed: 'ERR_ENVELOPE_TAMPERED' } },
      w.parties['bravo']!.sender,
    );
    await engine.onReceipt('bravo', refusal);
    for (const r of records) {
      const done = await waitFor(
        async () => {
          const x = await store.get(r.id);
          return x?.status === 'failed' ? x : undefined;
        },
        10_000,
        `exchange ${r.id} to fail`,
      );
      expect(done.failure?.code).to.equal('ERR_ENVELOPE_TAMPERED');
      const failed = (await ledger.byExchange(r.id)).filter((e) => e.entry.type === 'exchange.failed');
      expect(failed.map((e) => (e.entry.body as { reason: string }).reason)).to.deep.equal(['integrity']);
    }
  });

  it('ignores a failed batch receipt signed by someone else than the recipient', async function () {
    const records = await queue(2);
    await engine.start();
    await waitFor(() => relay.transfers.length > 0, 10_000, 'a transfer');
    await relay.transfers[0]!.done;
    const batchId = decodeTransferMeta(relay.transfers[0]!.meta)?.x as string;
    const charlie = w.parties['charlie']!;
    const forged = createReceipt(
      { exchangeId: batchId, sender: 'alpha', headerHash: null, contentHash: null, disposition: { failed: 'ERR_ENVELOPE_TAMPERED' } },
      { ...charlie.sender, agent: 'bravo', signingKid: w.parties['bravo']!.verified.signingKid },
    );
    await engine.onReceipt('bravo', forged);
    // Not final: the exchanges go back to the queue to be tried again.
    for (const r of records) {
      await waitFor(async () => ((await store.get(r.id))?.status === 'queued' ? true : undefined), 10_000, `exchange ${r.id} to be queued again`);
      expect((await ledger.byExchange(r.id)).filter((e) => e.entry.type === 'exchange.failed')).to.have.length(0);
    }
  });
});
