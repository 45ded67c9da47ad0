import { createHash, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { expect } from 'chai';
import { Ledger } from '../../../ledger/index.ts';
import { BATCH_CONTENT_TYPE, MemoryReplayStore, sealEnvelope, type Receipt } from '../../../hospital-agent/crypto/index.ts';
import { CONTENT_PATIENT_MISMATCH } from '../../../hospital-agent/engine/content-patient.ts';
import { PeerDirectory } from '../../../hospital-agent/engine/peers.ts';
import { Receiver, type IncomingTransfer } from '../../../hospital-agent/engine/receiver.ts';
import { encodeTransferMeta, type WireMessage } from '../../../hospital-agent/engine/wire.ts';
import { StateStore } from '../../../hospital-agent/store/state.ts';
import { Inbox } from '../../../hospital-agent/store/inbox.ts';
import { getWorld, type World } from '../crypto/fixtures.ts';
import { dicomFile } from '../../support/dicom.ts';
import { bundleFor, FIXTURE_SYSTEM } from '../../support/fhir.ts';
import { tempDir } from '../../support/tmp.ts';

/** What the sender's metadata says the content is about (the fixture's system and a value). */
const claim = (value: string): string => `${FIXTURE_SYSTEM}|${value}`;

interface Item {
  id: string;
  body: Buffer;
  contentType: string;
  /** The patient the signed metadata names (built here by hand: a sender whose own check was bypassed). */
  patient?: string;
}

// Raw envelopes built with sealEnvelope, as a sender that skipped (or lacks) the submission check would send them.
describe('Receiver: the content must be about the patient its signed metadata names', function () {
  this.timeout(30_000);
  let w: World;
  let tmp: ReturnType<typeof tempDir>;
  let state: StateStore;
  let ledger: Ledger;
  let inbox: Inbox;
  let receiver: Receiver;
  let sent: Array<{ to: string; message: WireMessage }>;
  let warned: Array<Record<string, unknown>>;

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
    warned = [];
    const send = (to: string, message: WireMessage): void => void sent.push({ to, message });
    receiver = new Receiver({
      self: 'bravo',
      inbox,
      receipts: state.receipts,
      ledger,
      peers: new PeerDirectory(w.ring, () => bravo.bundle, send),
      replay: new MemoryReplayStore(),
      recipientKeys: () => bravo.recipient,
      signer: () => bravo.sender,
      send,
      logger: { info() {}, warn: (o: Record<string, unknown>) => void warned.push(o), error() {} },
    });
  });
  afterEach(async function () {
    await ledger.close();
    await state.close();
    tmp.cleanup();
  });

  async function bytesOf(stream: AsyncIterable<unknown>): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const p of stream) parts.push(p as Buffer);
    return Buffer.concat(parts);
  }

  const sealOne = (one: Item): Promise<Buffer> =>
    bytesOf(
      sealEnvelope(Readable.from([one.body]), {
        exchangeId: one.id,
        sender: w.parties['alpha']!.sender,
        recipients: [w.parties['bravo']!.verified],
        contentType: one.contentType,
        consentRef: 'consent-1',
        ...(one.patient !== undefined ? { patient: one.patient } : {}),
      }),
    );

  const sealBatch = (items: Item[], batchId: string): Promise<Buffer> =>
    bytesOf(
      sealEnvelope(Readable.from([Buffer.concat(items.map((i) => i.body))]), {
        exchangeId: batchId,
        sender: w.parties['alpha']!.sender,
        recipients: [w.parties['bravo']!.verified],
        contentType: BATCH_CONTENT_TYPE,
        consentRef: null,
        batch: items.map((i) => ({
          exchangeId: i.id,
          contentType: i.contentType,
          consentRef: 'consent-1',
          ...(i.patient !== undefined ? { patient: i.patient } : {}),
          length: i.body.length,
          sha256: createHash('sha256').update(i.body).digest(),
        })),
      }),
    );

  function transfer(envelope: Buffer, meta: Buffer): IncomingTransfer {
    const t = Readable.from([envelope]) as unknown as IncomingTransfer & { from: string; meta: Buffer };
    t.from = 'alpha';
    t.meta = meta;
    t.abort = () => void t.destroy();
    return t;
  }

  function receipts(): Receipt[] {
    const out = sent.flatMap((s) =>
      s.message.t === 'receipts' ? s.message.receipts : s.message.t === 'receipt' ? [s.message.receipt] : [],
    ) as unknown as Receipt[];
    sent = [];
    return out;
  }

  const received = async (id: string): Promise<number> => (await ledger.byExchange(id)).filter((e) => e.entry.type === 'exchange.received').length;
  const inInbox = async (id: string): Promise<boolean> => (await inbox.get(id).catch(() => undefined)) !== undefined;

  const fhir = (value: string, patient?: string): Item => ({ id: randomUUID(), body: bundleFor(value), contentType: 'application/fhir+json', patient });
  const dicom = (value: string, patient?: string, issuer?: string): Item => ({
    id: randomUUID(),
    body: dicomFile({ patientId: value, ...(issuer ? { issuer } : {}) }),
    contentType: 'application/dicom',
    patient,
  });

  it('answers a single FHIR Bundle about another patient with a failed receipt, and delivers nothing', async function () {
    const bad = fhir('MRN-9999', claim('MRN-0001'));
    await receiver.onTransfer(transfer(await sealOne(bad), encodeTransferMeta(bad.id)));
    expect(receipts().map((r) => [r.exchangeId, r.disposition])).to.deep.equal([[bad.id, { failed: CONTENT_PATIENT_MISMATCH }]]);
    expect(await inInbox(bad.id)).to.equal(false);
    expect(await received(bad.id)).to.equal(0);
    // The log line names the exchange and the code, never the patient.
    expect(JSON.stringify(warned)).to.contain(CONTENT_PATIENT_MISMATCH);
    expect(JSON.stringify(warned)).not.to.match(/MRN-\d{4}/);
  });

  it('answers a DICOM file whose Patient ID is another patient with a failed receipt', async function () {
    for (const bad of [dicom('MRN-9999', claim('MRN-0001')), dicom('MRN-0001', claim('MRN-0001'), '1.2.840.99')]) {
      await receiver.onTransfer(transfer(await sealOne(bad), encodeTransferMeta(bad.id)));
      expect(receipts().map((r) => [r.exchangeId, r.disposition])).to.deep.equal([[bad.id, { failed: CONTENT_PATIENT_MISMATCH }]]);
      expect(await inInbox(bad.id)).to.equal(false);
    }
  });

  it('delivers content about the patient its metadata names, and content from senders that name none', async function () {
    const good = [
      fhir('MRN-0001', claim('MRN-0001')),
      fhir('MRN-0001', 'MRN-0001'),
      dicom('MRN-0001', claim('MRN-0001')),
      // The issuer is the sender's own name for its system: only the Patient ID can be compared here.
      dicom('MRN-0001', claim('MRN-0001'), 'MYONGJI'),
      dicom('MRN-0001', claim('MRN-0001'), FIXTURE_SYSTEM.slice('urn:oid:'.length)),
      fhir('MRN-9999'),
    ];
    for (const one of good) {
      await receiver.onTransfer(transfer(await sealOne(one), encodeTransferMeta(one.id)));
      expect(receipts().map((r) => [r.exchangeId, r.disposition])).to.deep.equal([[one.id, 'delivered']]);
      expect(await inInbox(one.id)).to.equal(true);
    }
  });

  it('refuses only the mismatched items of a batch, each with its own failed receipt', async function () {
    const items = [
      fhir('MRN-0001', claim('MRN-0001')),
      fhir('MRN-9999', claim('MRN-0001')),
      dicom('MRN-0002', claim('MRN-0001')),
      dicom('MRN-0001', claim('MRN-0001')),
    ];
    const batchId = randomUUID();
    await receiver.onTransfer(transfer(await sealBatch(items, batchId), encodeTransferMeta(batchId, items.length)));
    const byId = new Map(receipts().map((r) => [r.exchangeId, r.disposition]));
    expect(items.map((i) => byId.get(i.id))).to.deep.equal([
      'delivered',
      { failed: CONTENT_PATIENT_MISMATCH },
      { failed: CONTENT_PATIENT_MISMATCH },
      'delivered',
    ]);
    expect(await Promise.all(items.map((i) => inInbox(i.id)))).to.deep.equal([true, false, false, true]);
    expect(await Promise.all(items.map((i) => received(i.id)))).to.deep.equal([1, 0, 0, 1]);
  });
});
