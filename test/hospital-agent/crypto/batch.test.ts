import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { expect } from 'chai';
import {
  BATCH_CONTENT_TYPE,
  CryptoError,
  MAX_BATCH_ITEMS,
  MemoryReplayStore,
  openEnvelope,
  SealStream,
  type BatchItemInput,
  type SealOptions,
} from '../../../hospital-agent/crypto/index.ts';
import { metaSchema } from '../../../hospital-agent/crypto/format.ts';
import { contentAt, getWorld, nextId, openBuffer, sealBuffer, sealOpts, type World } from './fixtures.ts';

const sha = (b: Buffer): Buffer => createHash('sha256').update(b).digest();

function items(bodies: Buffer[]): BatchItemInput[] {
  return bodies.map((b, i) => ({
    exchangeId: nextId(),
    contentType: i % 2 ? 'application/dicom' : 'application/fhir+json',
    consentRef: i === 1 ? null : `consent-${i}`,
    length: b.length,
    sha256: sha(b),
  }));
}

function batchOpts(w: World, list: BatchItemInput[], extra: Partial<SealOptions> = {}): SealOptions {
  return sealOpts(w, 'alpha', ['bravo'], { contentType: BATCH_CONTENT_TYPE, consentRef: null, batch: list, chunkSize: 64, ...extra });
}

async function refusal(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => 'opened',
    (err: { code?: string }) => err.code ?? String(err),
  );
}

describe('batch envelopes', function () {
  let w: World;
  before(async function () {
    w = await getWorld();
  });

  it('carries several exchanges in one envelope, each checked against its signed length and hash', async function () {
    const bodies = [contentAt(1, Buffer.alloc(100)), Buffer.alloc(0), contentAt(2, Buffer.alloc(1000)), contentAt(3, Buffer.alloc(64))];
    const list = items(bodies);
    const { envelope } = await sealBuffer(Buffer.concat(bodies), batchOpts(w, list));
    const { opened, plaintext } = await openBuffer(w, envelope, 'bravo');
    expect(opened.contentType).to.equal(BATCH_CONTENT_TYPE);
    expect(opened.items?.map((i) => [i.exchangeId, i.contentType, i.consentRef, i.length, i.offset])).to.deep.equal(
      list.map((i, n) => [i.exchangeId, i.contentType, i.consentRef, i.length, bodies.slice(0, n).reduce((s, b) => s + b.length, 0)]),
    );
    for (const [n, item] of (opened.items ?? []).entries()) {
      expect(plaintext.subarray(item.offset, item.offset + item.length).equals(bodies[n] as Buffer)).to.equal(true);
      expect(item.sha256).to.equal((list[n] as BatchItemInput).sha256.toString('base64url'));
    }
  });

  it('keeps the item list encrypted: exchange ids, content types and consents are not in the clear', async function () {
    const bodies = [contentAt(4, Buffer.alloc(50)), contentAt(5, Buffer.alloc(50))];
    const list = items(bodies);
    const { envelope } = await sealBuffer(Buffer.concat(bodies), batchOpts(w, list));
    for (const i of list) expect(envelope.includes(i.exchangeId)).to.equal(false);
    expect(envelope.includes('application/dicom')).to.equal(false);
    expect(envelope.includes('consent-0')).to.equal(false);
  });

  it('opens into memory up to a limit and refuses more with ERR_ENVELOPE_TOO_LARGE', async function () {
    const bodies = [contentAt(6, Buffer.alloc(300)), contentAt(7, Buffer.alloc(300))];
    const { envelope } = await sealBuffer(Buffer.concat(bodies), batchOpts(w, items(bodies)));
    const open = (maxBytes: number): Promise<Awaited<ReturnType<typeof openEnvelope>>> =>
      openEnvelope(Readable.from([envelope]), {
        recipient: w.parties['bravo']!.recipient,
        resolveSender: w.ring.signerLookup(),
        replay: new MemoryReplayStore(),
        quarantine: { memory: { maxBytes } },
      });
    const opened = await open(600);
    expect(opened.content?.equals(Buffer.concat(bodies))).to.equal(true);
    expect(await refusal(open(599))).to.equal('ERR_ENVELOPE_TOO_LARGE');
  });

  it('refuses an item whose bytes differ from its signed hash (bodies swapped by the sender)', async function () {
    const a = contentAt(8, Buffer.alloc(40));
    const b = contentAt(9, Buffer.alloc(40));
    const { envelope } = await sealBuffer(Buffer.concat([b, a]), batchOpts(w, items([a, b])));
    expect(await refusal(openBuffer(w, envelope, 'bravo'))).to.equal('ERR_ENVELOPE_TAMPERED');
  });

  it('refuses a batch whose items do not add up to its content (more or fewer bytes than listed)', async function () {
    for (const extra of [Buffer.from('x'), Buffer.alloc(0)]) {
      const a = contentAt(10, Buffer.alloc(40));
      const list = items([a, Buffer.from('tail')]);
      const opts = batchOpts(w, list);
      // A forging sender: the header lists 44 bytes, the content has 41 or 40 (the sealer's own check is bypassed).
      const stream = new SealStream(opts);
      (stream as unknown as { options: SealOptions }).options = { ...opts, batch: undefined };
      Readable.from([Buffer.concat([a, extra])]).pipe(stream);
      const parts: Buffer[] = [];
      for await (const p of stream) parts.push(p as Buffer);
      expect(await refusal(openBuffer(w, Buffer.concat(parts), 'bravo'))).to.equal('ERR_ENVELOPE_MALFORMED');
    }
    const a = contentAt(11, Buffer.alloc(40));
    const list = items([a]);
    const opts = batchOpts(w, list);
    const stream = new SealStream(opts);
    (stream as unknown as { options: SealOptions }).options = { ...opts, batch: undefined };
    Readable.from([Buffer.concat([a, Buffer.from('more than listed')])]).pipe(stream);
    const parts: Buffer[] = [];
    for await (const p of stream) parts.push(p as Buffer);
    expect(await refusal(openBuffer(w, Buffer.concat(parts), 'bravo'))).to.equal('ERR_ENVELOPE_MALFORMED');
  });

  it('the sealer refuses an inconsistent batch before a byte is trusted', async function () {
    const a = contentAt(12, Buffer.alloc(40));
    expect(await refusal(sealBuffer(Buffer.concat([a, a]), batchOpts(w, items([a]))))).to.equal('ERR_ENVELOPE_MALFORMED');
    const dup = items([a, a]);
    (dup[1] as BatchItemInput).exchangeId = (dup[0] as BatchItemInput).exchangeId;
    expect(() => new SealStream(batchOpts(w, dup))).to.throw(TypeError, /repeat/);
    expect(() => new SealStream(batchOpts(w, items([a]), { contentType: 'application/fhir+json' }))).to.throw(TypeError, /batch/);
    expect(() => new SealStream(sealOpts(w, 'alpha', ['bravo'], { contentType: BATCH_CONTENT_TYPE }))).to.throw(TypeError, /for batches/);
    expect(() => new SealStream(batchOpts(w, []))).to.throw(TypeError, /1 to/);
    expect(() => new SealStream(batchOpts(w, items(Array.from({ length: MAX_BATCH_ITEMS + 1 }, () => a))))).to.throw(TypeError, /1 to/);
  });

  it('the metadata schema ties the batch content type to an item list of distinct exchanges', function () {
    const base = { exchangeId: 'batch-1', from: 'alpha', to: ['bravo'], consentRef: null };
    const item = { exchangeId: 'x-1', contentType: 'application/fhir+json', consentRef: null, length: 1, sha256: 'A'.repeat(43) };
    expect(metaSchema.safeParse({ ...base, contentType: BATCH_CONTENT_TYPE, items: [item] }).success).to.equal(true);
    expect(metaSchema.safeParse({ ...base, contentType: BATCH_CONTENT_TYPE }).success).to.equal(false);
    expect(metaSchema.safeParse({ ...base, contentType: 'application/fhir+json', items: [item] }).success).to.equal(false);
    expect(metaSchema.safeParse({ ...base, contentType: BATCH_CONTENT_TYPE, items: [item, item] }).success).to.equal(false);
  });

  it('a failed open of a batch in memory leaves nothing behind and keeps the replay store clean', async function () {
    const a = contentAt(13, Buffer.alloc(200));
    const { envelope } = await sealBuffer(a, batchOpts(w, items([a])));
    const replay = new MemoryReplayStore();
    const cut = envelope.subarray(0, envelope.length - 10);
    const err = await openEnvelope(Readable.from([cut]), {
      recipient: w.parties['bravo']!.recipient,
      resolveSender: w.ring.signerLookup(),
      replay,
      quarantine: { memory: { maxBytes: 1000 } },
    }).then(
      () => undefined,
      (e: CryptoError) => e,
    );
    expect(err?.code).to.equal('ERR_ENVELOPE_TRUNCATED');
    expect(replay.size).to.equal(0);
  });
});
