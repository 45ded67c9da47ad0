import { createHash } from 'node:crypto';
import { statSync, readFileSync, readdirSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { expect } from 'chai';
import { MemoryReplayStore, openEnvelope, sealEnvelope, SealStream, type OpenedEnvelope } from '../../../hospital-agent/crypto/index.ts';
import { ContentChecker, contentAt, contentStream, getWorld, layout, openBuffer, sealBuffer, sealOpts, split, type World } from './fixtures.ts';
import { tempDir } from '../../support/tmp.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

describe('envelope round trips', function () {
  let w: World;
  before(async function () {
    w = await getWorld();
  });

  for (const recipients of [['bravo'], ['bravo', 'charlie'], ['bravo', 'charlie', 'delta', 'echo', 'foxtrot']]) {
    it(`delivers to each of ${recipients.length} recipient(s), for sizes around chunk boundaries`, async function () {
      for (const size of [0, 1, 63, 64, 65, 128, 1000]) {
        const data = contentAt(size * 7, Buffer.alloc(size));
        const { envelope, summary } = await sealBuffer(data, sealOpts(w, 'alpha', recipients, { chunkSize: 64 }));
        expect(summary.contentLength).to.equal(size);
        expect(summary.chunks).to.equal(Math.floor(size / 64) + 1);
        expect(summary.envelopeLength).to.equal(envelope.length);
        for (const r of recipients) {
          const { opened, plaintext } = await openBuffer(w, envelope, r);
          expect(plaintext.equals(data), `${size} bytes to ${r}`).to.equal(true);
          expect(opened.contentLength).to.equal(size);
          expect(opened.contentSha256).to.equal(summary.contentSha256);
          expect(opened.headerHash).to.equal(summary.headerHash);
          expect(opened.to).to.deep.equal(recipients);
          expect(opened.from).to.equal('alpha');
          expect(opened.sender.agent).to.equal('alpha');
        }
      }
    });
  }

  it('uses a content hash the caller computed instead of hashing again, and the opener holds it to the bytes', async function () {
    const data = contentAt(5, Buffer.alloc(1000));
    const right = { sha256: createHash('sha256').update(data).digest(), length: data.length };
    const { envelope, summary } = await sealBuffer(data, sealOpts(w, 'alpha', ['bravo'], { chunkSize: 64, knownContent: () => right }));
    expect(summary.contentSha256).to.equal(right.sha256.toString('base64url'));
    expect((await openBuffer(w, envelope, 'bravo')).plaintext.equals(data)).to.equal(true);
    // A hash that does not match the bytes (e.g. a body changed on disk after it was stored) is refused by the recipient.
    const wrong = { sha256: createHash('sha256').update('something else').digest(), length: data.length };
    const bad = await sealBuffer(data, sealOpts(w, 'alpha', ['bravo'], { chunkSize: 64, knownContent: () => wrong }));
    const refused = await openBuffer(w, bad.envelope, 'bravo').then(
      () => undefined,
      (err: { code?: string }) => err.code,
    );
    expect(refused).to.equal('ERR_ENVELOPE_TAMPERED');
    // A length other than what was sealed fails the sealer itself.
    const short = await sealBuffer(data, sealOpts(w, 'alpha', ['bravo'], { knownContent: () => ({ ...right, length: 999 }) })).then(
      () => undefined,
      (err: { code?: string }) => err.code,
    );
    expect(short).to.equal('ERR_ENVELOPE_MALFORMED');
  });

  it('carries content type and consent reference encrypted, not in the clear', async function () {
    const opts = sealOpts(w, 'alpha', ['bravo'], { contentType: 'application/dicom', consentRef: 'consent-very-distinctive-42' });
    const { envelope } = await sealBuffer(Buffer.from('x'), opts);
    expect(envelope.includes('consent-very-distinctive-42')).to.equal(false);
    expect(envelope.includes('application/dicom')).to.equal(false);
    const { opened } = await openBuffer(w, envelope, 'bravo');
    expect(opened.contentType).to.equal('application/dicom');
    expect(opened.consentRef).to.equal('consent-very-distinctive-42');
    const noConsent = await sealBuffer(Buffer.from('x'), sealOpts(w, 'alpha', ['bravo'], { consentRef: null }));
    expect((await openBuffer(w, noConsent.envelope, 'bravo')).opened.consentRef).to.equal(null);
  });

  it('lays out frames as documented: full chunks then one shorter final chunk, sequence numbers in order', async function () {
    const { envelope } = await sealBuffer(contentAt(0, Buffer.alloc(300)), sealOpts(w, 'alpha', ['bravo'], { chunkSize: 100 }));
    expect(envelope.subarray(0, 5).toString('hex')).to.equal('8948454e01');
    const l = layout(envelope);
    expect(l.chunks.map((c) => [String.fromCharCode(c.kind), c.len])).to.deep.equal([
      ['C', 100],
      ['C', 100],
      ['C', 100],
      ['F', 0],
    ]);
    expect(l.chunks.map((c) => envelope.readUInt32BE(c.start + 1))).to.deep.equal([0, 1, 2, 3]);
    expect(l.trailer.end).to.equal(envelope.length);
    const header = JSON.parse(envelope.subarray(l.headerStart, l.headerEnd).toString());
    expect(header.to.map((r: { agent: string }) => r.agent)).to.deep.equal(['bravo']);
    expect(header.chunkSize).to.equal(100);
  });

  it('opens whatever way the stream is cut (1-byte and odd-sized reads)', async function () {
    const data = contentAt(5, Buffer.alloc(777));
    const { envelope } = await sealBuffer(data, sealOpts(w, 'alpha', ['bravo'], { chunkSize: 50 }));
    for (const sizes of [[1], [3, 7, 11], [4096]]) {
      const { plaintext } = await openBuffer(w, split(envelope, sizes), 'bravo');
      expect(plaintext.equals(data)).to.equal(true);
    }
  });

  it('quarantines into a new 0600 file and keeps it once everything verified', async function () {
    const t = tempDir();
    try {
      const data = contentAt(0, Buffer.alloc(5000));
      const { envelope } = await sealBuffer(data, sealOpts(w, 'alpha', ['bravo'], { chunkSize: 1024 }));
      const { opened } = await openBuffer(w, envelope, 'bravo', { quarantine: { dir: t.dir } });
      expect(opened.path).to.be.a('string');
      expect(readFileSync(opened.path as string).equals(data)).to.equal(true);
      expect(statSync(opened.path as string).mode & 0o777).to.equal(0o600);
      expect(readdirSync(t.dir)).to.have.length(1);
    } finally {
      t.cleanup();
    }
  });

  it('refuses bad seal options with a TypeError', function () {
    const ok = sealOpts(w, 'alpha', ['bravo']);
    expect(() => new SealStream({ ...ok, exchangeId: 'bad id with spaces' })).to.throw(TypeError);
    expect(() => new SealStream({ ...ok, recipients: [] })).to.throw(TypeError);
    expect(() => new SealStream({ ...ok, recipients: [w.parties['bravo']!.verified, w.parties['bravo']!.verified] })).to.throw(TypeError);
    expect(() => new SealStream({ ...ok, chunkSize: 8 })).to.throw(TypeError);
    expect(() => new SealStream({ ...ok, sender: { ...ok.sender, signingKey: w.parties['alpha']!.keys.encryption.privateKey } })).to.throw(TypeError);
  });

  it('streams 1 GiB through seal and open with bounded memory', async function () {
    this.timeout(240_000);
    const size = 2 ** 30;
    const checker = new ContentChecker();
    let writes = 0;
    let peak = 0;
    const live = (): number => {
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    };
    gc();
    await new Promise((r) => setTimeout(r, 20));
    const base = live();
    // Sample live memory after a collection every 64 writes; the pause lets
    // V8's array-buffer sweeper release freed backing stores first.
    const write = checker._write.bind(checker);
    checker._write = (chunk, enc, cb) => {
      if ((writes++ & 63) !== 0) return write(chunk, enc, cb);
      gc();
      setTimeout(() => {
        peak = Math.max(peak, live());
        write(chunk, enc, cb);
      }, 10);
    };
    const sealed = sealEnvelope(contentStream(size), sealOpts(w, 'alpha', ['bravo']));
    const opened: OpenedEnvelope = await openEnvelope(sealed, {
      recipient: w.parties['bravo']!.recipient,
      resolveSender: w.ring.signerLookup(),
      replay: new MemoryReplayStore(),
      quarantine: { writable: checker },
    });
    expect(opened.contentLength).to.equal(size);
    expect(checker.pos).to.equal(size);
    expect(checker.mismatch).to.equal(undefined);
    expect(opened.contentSha256).to.equal((await sealed.summary).contentSha256);
    expect(writes).to.be.greaterThan(256);
    expect(peak - base, `live memory grew ${((peak - base) / 2 ** 20).toFixed(1)} MiB`).to.be.lessThan(64 * 2 ** 20);
  });
});
