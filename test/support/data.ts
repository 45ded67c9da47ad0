import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';

/**
 * A deterministic pseudo-random byte stream of `size` bytes (xorshift, fast,
 * incompressible enough), with its SHA-256 available once it has ended.
 */
export function patternStream(size: number, seed = 1, chunk = 1 << 20): { stream: Readable; sha256: () => string } {
  const hash = createHash('sha256');
  let digest: string | undefined;
  let produced = 0;
  let x = seed >>> 0 || 1;
  const stream = new Readable({
    read() {
      if (produced >= size) {
        digest ??= hash.digest('hex');
        this.push(null);
        return;
      }
      const n = Math.min(chunk, size - produced);
      const buf = Buffer.allocUnsafe(n);
      const words = n >>> 2;
      for (let i = 0; i < words; i += 1) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        buf.writeUInt32LE(x >>> 0, i << 2);
      }
      for (let i = words << 2; i < n; i += 1) buf[i] = i & 0xff;
      produced += n;
      hash.update(buf);
      this.push(buf);
    },
  });
  return {
    stream,
    sha256: () => {
      if (!digest) throw new Error('stream not finished');
      return digest;
    },
  };
}
