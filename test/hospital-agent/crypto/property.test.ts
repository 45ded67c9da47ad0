import { expect } from 'chai';
import fc from 'fast-check';
import { CryptoError } from '../../../hospital-agent/crypto/index.ts';
import { contentAt, flip, getWorld, openBuffer, sealBuffer, sealOpts, split, type World } from './fixtures.ts';

describe('envelope properties (fast-check)', function () {
  this.timeout(120_000);
  let w: World;
  before(async function () {
    w = await getWorld();
  });

  it('round-trips any size, chunk size and read boundaries', async function () {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 5000 }),
        fc.integer({ min: 16, max: 700 }),
        fc.array(fc.integer({ min: 1, max: 2000 }), { minLength: 1, maxLength: 6 }),
        async (size, chunkSize, openPieces) => {
          const data = contentAt(size, Buffer.alloc(size));
          const { envelope, summary } = await sealBuffer(data, sealOpts(w, 'alpha', ['bravo'], { chunkSize }));
          expect(summary.chunks).to.equal(Math.floor(size / chunkSize) + 1);
          const { plaintext, opened } = await openBuffer(w, split(envelope, openPieces), 'bravo');
          expect(plaintext.equals(data)).to.equal(true);
          expect(opened.contentLength).to.equal(size);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('seals the same way whatever pieces the plaintext arrives in', async function () {
    const { sealEnvelope } = await import('../../../hospital-agent/crypto/index.ts');
    const { Readable } = await import('node:stream');
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 3000 }), fc.array(fc.integer({ min: 1, max: 500 }), { minLength: 1, maxLength: 5 }), async (size, cuts) => {
        const data = contentAt(size, Buffer.alloc(size));
        const s = sealEnvelope(Readable.from([...split(data, cuts)]), sealOpts(w, 'alpha', ['bravo'], { chunkSize: 128 }));
        const parts: Buffer[] = [];
        for await (const p of s) parts.push(p as Buffer);
        const { plaintext } = await openBuffer(w, Buffer.concat(parts), 'bravo');
        expect(plaintext.equals(data)).to.equal(true);
        expect((await s.summary).chunks).to.equal(Math.floor(size / 128) + 1);
      }),
      { numRuns: 25 },
    );
  });

  it('refuses every single-bit flip and every truncation', async function () {
    const data = contentAt(0, Buffer.alloc(2000));
    const { envelope } = await sealBuffer(data, sealOpts(w, 'alpha', ['bravo', 'charlie'], { chunkSize: 300 }));
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: envelope.length - 1 }), fc.integer({ min: 0, max: 7 }), fc.boolean(), async (at, bit, truncate) => {
        const bad = truncate ? envelope.subarray(0, at) : flip(envelope, at, bit);
        try {
          await openBuffer(w, bad, 'bravo');
        } catch (err) {
          expect(err).to.be.instanceOf(CryptoError);
          return;
        }
        expect.fail(`${truncate ? 'truncation at' : 'flip at'} ${at} went unnoticed`);
      }),
      { numRuns: 150 },
    );
  });
});
