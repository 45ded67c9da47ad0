import { createCipheriv, createHash } from 'node:crypto';
import { Readable } from 'node:stream';

const BLOCK = 1 << 20;

/**
 * A deterministic, incompressible byte stream of `size` bytes for tests and
 * benches: a 1 MiB AES-CTR keystream block derived from `seed`, repeated with
 * each copy's first 8 bytes set to its index (so no two chunks are equal).
 * Cheap to generate, so it does not limit what it measures. Its SHA-256 is
 * available once the stream has ended (unless `hash` is false: a bench
 * whose client shares the cores with what it measures need not pay for it).
 */
export function patternStream(size: number, seed = 1, { hash: hashing = true }: { hash?: boolean } = {}): { stream: Readable; sha256: () => string } {
  const key = createHash('sha256').update(`pattern-${seed}`).digest();
  const base = createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(BLOCK));
  const hash = createHash('sha256');
  let digest: string | undefined;
  let produced = 0;
  let index = 0;
  const stream = new Readable({
    highWaterMark: 4 * BLOCK,
    read() {
      if (produced >= size) {
        digest ??= hash.digest('hex');
        this.push(null);
        return;
      }
      const n = Math.min(BLOCK, size - produced);
      const buf = Buffer.from(base.subarray(0, n));
      if (n >= 8) buf.writeBigUInt64LE(BigInt(index), 0);
      index += 1;
      produced += n;
      if (hashing) hash.update(buf);
      this.push(buf);
    },
  });
  return {
    stream,
    sha256: () => {
      if (!hashing) throw new Error('this stream was made without its hash');
      if (!digest) throw new Error('stream not finished');
      return digest;
    },
  };
}
