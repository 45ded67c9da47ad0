import { createHash, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { expect } from 'chai';
import { Ledger } from '../../../ledger/index.ts';
import { BATCH_CONTENT_TYPE, MemoryReplayStore, sealEnvelope, verifyReceipt, type Receipt } from '../../../hospital-agent/crypto/index.ts';
import { PeerDirectory } from '../../../hospital-agent/engine/peers.ts';
import { Receiver, type IncomingTransfer } from '../../../hospital-agent/engine/receiver.ts';
import { encodeTransferMeta, type WireMessage } from '../../../hospital-agent/engine/wire.ts';
import { StateStore } from '../../../hospital-agent/store/state.ts';
import { Inbox } from '../../../hospital-agent/store/inbox.ts';
import { getWorld, type World } from '../crypto/fixtures.ts';
import { tempDir } from '../../support/tmp.ts';

interface Item {
  id: string;
  body: Buffer;
}

const item = (text: string, id: string = randomUUID()): Item => ({
  id,
  body: Buffer.from(JSON.stringify({ resourceType: 'Bundle', type: 'collection', note: text })),
});

describe('Receiver: batch envelopes', function () {
  let w: World;
  let tmp: ReturnType<typeof tempDir>;
  let state: StateStore;
  let ledger: Ledger;
  let inbox: Inbox;
  let receiver: Receiver;
  let sent: Array<{ to: string; message: WireMessage }>;
  let replay: MemoryReplayStore;

  beforeEach(async function () {
    w = await getWorld();
    tmp = tempDir();
    const bravo = w.parties['bravo']!;
    state = new StateStore(join(tmp.dir, 'state'));
    await state.open();
    ledger = await Ledger.open({
      path: join(tmp.dir, 'ledger'),
      trust: { caPem: w.caPem },
      author: { feed: 'bravo', signingKey: bravo.keys.signing.privateKey, bundle: bravo.bundle },
    });
    inbox = new Inbox(join(tmp.dir, 'inbox'), state.inbox);
    await inbox.recover();
    sent = [];
    replay = new MemoryReplayStore();
    const send = (to: string, message: WireMessage): void => void sent.push({ to, message });
    receiver = new Receiver({
      self: 'bravo',
      inbox,
      receipts: state.receipts,
      ledger,
      peers: new PeerDirectory(w.ring, () => bravo.bundle, send),
      replay,
      recipientKeys: () => bravo.recipient,
      signer: () => bravo.sender,
      send,
      logger: { info() {}, warn() {}, error() {} },
    });
  });
  afterEach(async function () {
    await ledger.close();
    await state.close();
    tmp.cleanup();
  });

  async function seal(items: Item[], batchId = randomUUID(), from = 'alpha'): Promise<{ batchId: string; envelope: Buffer; headerHash: string }> {
    const stream = sealEnvelope(Readable.from([Buffer.concat(items.map((i) => i.body))]), {
      exchangeId: batchId,
      sender: w.parties[from]!.sender,
      recipients: [w.parties['bravo']!.verified],
      contentType: BATCH_CONTENT_TYPE,
      consentRef: null,
      batch: items.map((i) => ({
        exchangeId: i.id,
        contentType: 'application/fhir+json',
        consentRef: 'consent-1',
        length: i.body.length,
        sha256: createHash('sha256').update(i.body).digest(),
      })),
      chunkSize: 64,
    });
    const parts: Buffer[] = [];
    for await (const p of stream) parts.push(p as Buffer);
    return { batchId, envelope: Buffer.concat(parts), headerHash: (await stream.summary).headerHash };
  }

  /** A single (not batch) envelope of one exchange. */
  async function sealOne(one: Item, from = 'alpha'): Promise<Buffer> {
    const stream = sealEnvelope(Readable.from([one.body]), {
      exchangeId: one.id,
      sender: w.parties[from]!.sender,
      recipients: [w.parties['bravo']!.verified],
      contentType: 'application/fhir+json',
      consentRef: 'consent-1',
    });
    const parts: Buffer[] = [];
    for await (const p of stream) parts.push(p as Buffer);
    return Buffer.concat(parts);
  }

  function transfer(envelope: Buffer, meta: Buffer, from = 'alpha'): IncomingTransfer & { aborted?: string } {
    const t = Readable.from([envelope]) as unknown as IncomingTransfer & { from: string; meta: Buffer; aborted?: string };
    t.from = from;
    t.meta = meta;
    t.abort = (code) => {
      t.aborted = code;
      t.destroy();
    };
    return t;
  }

  function receipts(): Receipt[] {
    const out = sent.flatMap((s) =>
      s.message.t === 'receipts' ? s.message.receipts : s.message.t === 'receipt' ? [s.message.receipt] : [],
    ) as unknown as Receipt[];
    sent = [];
    return out;
  }

  async function received(id: string): Promise<number> {
    return (await ledger.byExchange(id)).filter((e) => e.entry.type === 'exchange.received').length;
  }

  it('releases every exchange to the inbox once, logs each, and answers with receipts that verify and name the envelope', async function () {
    const items = [item('one'), item('two'), item('three')];
    const { batchId, envelope, headerHash } = await seal(items);
    await receiver.onTransfer(transfer(envelope, encodeTransferMeta(batchId, items.length)));
    const answers = receipts();
    expect(answers.map((r) => r.exchangeId)).to.deep.equal(items.map((i) => i.id));
    for (const r of answers) {
      const v = await verifyReceipt(r, { resolveSigner: w.ring.signerLookup(), expect: { sender: 'alpha', recipient: 'bravo', headerHash } });
      expect(v.receipt.disposition).to.equal('delivered');
      expect(r.batch?.size).to.equal(3);
    }
    for (const i of items) {
      const meta = await inbox.get(i.id);
      expect(meta).to.include({ from: 'alpha', contentType: 'application/fhir+json', bytes: i.body.length });
      const parts: Buffer[] = [];
      for await (const p of await inbox.openContent(i.id)) parts.push(p as Buffer);
      expect(Buffer.concat(parts).equals(i.body)).to.equal(true);
      expect(await received(i.id)).to.equal(1);
    }
    expect((await inbox.list()).map((m) => m.exchangeId)).to.have.members(items.map((i) => i.id));
  });

  it('never delivers an exchange twice: one resent in a later batch gets a fresh receipt for that envelope', async function () {
    const first = item('first');
    const a = await seal([first]);
    await receiver.onTransfer(transfer(a.envelope, encodeTransferMeta(a.batchId, 1)));
    expect(receipts()).to.have.length(1);
    await inbox.ack(first.id);
    // The sender lost that receipt and resends the exchange, together with a new one.
    const second = item('second');
    const b = await seal([first, second]);
    await receiver.onTransfer(transfer(b.envelope, encodeTransferMeta(b.batchId, 2)));
    const answers = receipts();
    expect(answers.map((r) => r.exchangeId)).to.deep.equal([first.id, second.id]);
    for (const r of answers) await verifyReceipt(r, { resolveSigner: w.ring.signerLookup(), expect: { headerHash: b.headerHash } });
    expect(await received(first.id)).to.equal(1);
    expect(await received(second.id)).to.equal(1);
    // Still the first delivery (acknowledged by the EHR), not a second one.
    expect((await inbox.get(first.id))?.ackedAt).to.be.a('string');
    expect((await inbox.list()).filter((m) => m.exchangeId === first.id)).to.have.length(1);
    // A later request for the receipt is answered with the one naming the last envelope.
    await receiver.onReceiptGet('alpha', first.id);
    const again = receipts();
    expect(again[0]?.headerHash).to.equal(b.headerHash);
  });

  it('answers an exchange id delivered before with other content with the receipt of what was delivered, and delivers nothing', async function () {
    const original = item('original');
    const a = await seal([original]);
    await receiver.onTransfer(transfer(a.envelope, encodeTransferMeta(a.batchId, 1)));
    const [firstReceipt] = receipts();
    const impostor = item('something else', original.id);
    const b = await seal([impostor]);
    await receiver.onTransfer(transfer(b.envelope, encodeTransferMeta(b.batchId, 1)));
    const [answer] = receipts();
    expect(answer?.contentHash).to.equal(firstReceipt?.contentHash);
    expect(answer?.headerHash).to.equal(a.headerHash);
    const parts: Buffer[] = [];
    for await (const p of await inbox.openContent(original.id)) parts.push(p as Buffer);
    expect(Buffer.concat(parts).equals(original.body)).to.equal(true);
    expect(await received(original.id)).to.equal(1);
  });

  it('refuses a replayed batch envelope without a word, and a tampered one with a failed receipt for the batch, releasing nothing', async function () {
    const x = item('x');
    const a = await seal([x]);
    await receiver.onTransfer(transfer(a.envelope, encodeTransferMeta(a.batchId, 1)));
    receipts();
    await receiver.onTransfer(transfer(a.envelope, encodeTransferMeta(a.batchId, 1)));
    expect(receipts()).to.deep.equal([]);
    expect(await received(x.id)).to.equal(1);

    const y = item('y');
    const b = await seal([y]);
    const tampered = Buffer.from(b.envelope);
    tampered[tampered.length - 100] = (tampered[tampered.length - 100] as number) ^ 1;
    await receiver.onTransfer(transfer(tampered, encodeTransferMeta(b.batchId, 1)));
    const [failed] = receipts();
    expect(failed?.exchangeId).to.equal(b.batchId);
    expect(failed?.disposition).to.have.property('failed');
    await verifyReceipt(failed, { resolveSigner: w.ring.signerLookup(), expect: { sender: 'alpha', recipient: 'bravo' } });
    expect(await inbox.get(y.id)).to.equal(undefined);
    expect(await received(y.id)).to.equal(0);
  });

  it('refuses a batch whose transfer announces another number of exchanges than the envelope carries', async function () {
    const items = [item('p'), item('q')];
    const { batchId, envelope } = await seal(items);
    await receiver.onTransfer(transfer(envelope, encodeTransferMeta(batchId, 3)));
    const [failed] = receipts();
    expect(failed?.exchangeId).to.equal(batchId);
    expect(failed?.disposition).to.deep.equal({ failed: 'ERR_ENVELOPE_WRONG_RECIPIENT' });
    for (const i of items) expect(await inbox.get(i.id)).to.equal(undefined);
  });

  it('lets the EHR acknowledge and delete an item kept in the state database, like a file item', async function () {
    const z = item('z');
    const a = await seal([z]);
    await receiver.onTransfer(transfer(a.envelope, encodeTransferMeta(a.batchId, 1)));
    expect((await inbox.ack(z.id)).ackedAt).to.be.a('string');
    expect((await inbox.get(z.id))?.ackedAt).to.be.a('string');
    await inbox.remove(z.id);
    expect(await inbox.get(z.id)).to.equal(undefined);
    await inbox.remove(z.id).then(
      () => expect.fail('removed twice'),
      (err: { code?: string }) => expect(err.code).to.equal('ERR_NOT_FOUND'),
    );
  });

  describe("an exchange id another hospital's inbox item has", function () {
    async function content(id: string): Promise<Buffer> {
      const parts: Buffer[] = [];
      for await (const p of await inbox.openContent(id)) parts.push(p as Buffer);
      return Buffer.concat(parts);
    }

    it('in a batch: refused with its own failed receipt, the item untouched, the rest of the batch delivered', async function () {
      const first = item('from alpha');
      const a = await seal([first]);
      await receiver.onTransfer(transfer(a.envelope, encodeTransferMeta(a.batchId, 1)));
      expect(receipts().map((r) => r.disposition)).to.deep.equal(['delivered']);
      // charlie reads alpha's exchange ids in the replicated ledger and sends one of them.
      const copy = item('from charlie, same id', first.id);
      const other = item('from charlie');
      const c = await seal([copy, other], randomUUID(), 'charlie');
      await receiver.onTransfer(transfer(c.envelope, encodeTransferMeta(c.batchId, 2), 'charlie'));
      const answers = receipts();
      for (const r of answers)
        await verifyReceipt(r, { resolveSigner: w.ring.signerLookup(), expect: { sender: 'charlie', recipient: 'bravo', headerHash: c.headerHash } });
      const byId = new Map(answers.map((r) => [r.exchangeId, r.disposition]));
      expect(byId.get(first.id)).to.deep.equal({ failed: 'ERR_EXCHANGE_ID_IN_USE' });
      expect(byId.get(other.id)).to.equal('delivered');
      expect(await inbox.get(first.id)).to.include({ from: 'alpha' });
      expect((await content(first.id)).equals(first.body)).to.equal(true);
      expect((await inbox.get(other.id))?.from).to.equal('charlie');
      expect(await received(first.id)).to.equal(1);
    });

    it('in a batch, when the item is a file (it came alone): refused just the same', async function () {
      const first = item('from alpha, alone');
      await receiver.onTransfer(transfer(await sealOne(first), encodeTransferMeta(first.id)));
      expect(receipts().map((r) => r.disposition)).to.deep.equal(['delivered']);
      const other = item('from charlie');
      const c = await seal([item('from charlie, same id', first.id), other], randomUUID(), 'charlie');
      await receiver.onTransfer(transfer(c.envelope, encodeTransferMeta(c.batchId, 2), 'charlie'));
      const byId = new Map(receipts().map((r) => [r.exchangeId, r.disposition]));
      expect(byId.get(first.id)).to.deep.equal({ failed: 'ERR_EXCHANGE_ID_IN_USE' });
      expect(byId.get(other.id)).to.equal('delivered');
      expect(await inbox.get(first.id)).to.include({ from: 'alpha' });
      expect((await content(first.id)).equals(first.body)).to.equal(true);
    });

    it("alone: refused with a failed receipt, never answered with the other hospital's receipt", async function () {
      const first = item('from alpha');
      const a = await seal([first]);
      await receiver.onTransfer(transfer(a.envelope, encodeTransferMeta(a.batchId, 1)));
      receipts();
      const t = transfer(await sealOne(item('from charlie, same id', first.id), 'charlie'), encodeTransferMeta(first.id), 'charlie');
      await receiver.onTransfer(t);
      expect(t.aborted).to.equal('rejected');
      const answers = receipts();
      expect(answers.map((r) => [r.exchangeId, r.sender, r.disposition])).to.deep.equal([[first.id, 'charlie', { failed: 'ERR_EXCHANGE_ID_IN_USE' }]]);
      expect(await inbox.get(first.id)).to.include({ from: 'alpha' });
      expect((await content(first.id)).equals(first.body)).to.equal(true);
    });
  });

  it('an exchange released to the inbox is never answered with a failed receipt: when logging it fails, its resend is answered from the inbox', async function () {
    const one = item('large enough to travel alone');
    const append = ledger.append.bind(ledger);
    ledger.append = ((input: Parameters<Ledger['append']>[0]) =>
      input.type === 'exchange.received' ? Promise.reject(new Error('disk full')) : append(input)) as Ledger['append'];
    try {
      await receiver.onTransfer(transfer(await sealOne(one), encodeTransferMeta(one.id)));
    } finally {
      ledger.append = append;
    }
    expect(receipts(), 'no receipt, and above all no failed one').to.deep.equal([]);
    expect(await inbox.get(one.id)).to.include({ from: 'alpha' });
    // The sender, told there is no receipt, resends; the resend is answered from the inbox and logged then.
    const resend = transfer(await sealOne(one), encodeTransferMeta(one.id));
    await receiver.onTransfer(resend);
    expect(receipts().map((r) => r.disposition)).to.deep.equal(['delivered']);
    expect(resend.aborted).to.equal('rejected');
    expect(await received(one.id)).to.equal(1);
    expect((await inbox.list()).filter((m) => m.exchangeId === one.id)).to.have.length(1);
  });

  it('answers receipt.get for an item released before a crash took its receipt with a rebuilt receipt, not receipt.none', async function () {
    // Found by the crash soak: told "none", a sender whose consent was revoked meanwhile failed an exchange in this inbox.
    const one = item('released, receipt lost');
    const a = await seal([one]);
    await receiver.onTransfer(transfer(a.envelope, encodeTransferMeta(a.batchId, 1)));
    expect(await inbox.get(one.id)).to.not.equal(undefined);
    // As after a crash between the release and the receipt: the item is there, its issued receipt is not.
    await (state.receipts as unknown as { table: { del(k: string): Promise<void> } }).table.del(`alpha!${one.id}`);
    sent.length = 0;
    await receiver.onReceiptGet('alpha', one.id);
    expect(sent.map((s) => s.message.t)).to.deep.equal(['receipt']);
    const receipt = (sent[0]!.message as Extract<WireMessage, { t: 'receipt' }>).receipt;
    const verified = await verifyReceipt(receipt, {
      resolveSigner: w.ring.signerLookup(),
      expect: { exchangeId: one.id, sender: 'alpha', recipient: 'bravo' },
    });
    expect(verified.receipt.disposition).to.equal('delivered');
    // An id it never had is still answered receipt.none.
    sent.length = 0;
    await receiver.onReceiptGet('alpha', randomUUID());
    expect(sent.map((s) => s.message.t)).to.deep.equal(['receipt.none']);
  });
});
