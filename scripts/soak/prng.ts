// The soak's seeded pseudo-random numbers (mulberry32): every choice the soak makes comes from here, so a seed repeats a run's decisions.

/** A seeded PRNG with the few draws the soak needs. */
export class Prng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** One element of a non-empty list. */
  pick<T>(list: readonly T[]): T {
    if (list.length === 0) throw new TypeError('pick from an empty list');
    return list[Math.floor(this.next() * list.length)]!;
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** A new generator seeded from this one (an independent stream per concern). */
  fork(): Prng {
    return new Prng(Math.floor(this.next() * 4294967296));
  }

  /** `size` bytes drawn from this generator (xorshift32 words seeded from it: fast enough for multi-MiB bodies). */
  bytes(size: number): Buffer {
    const out = Buffer.allocUnsafe(size);
    let x = Math.floor(this.next() * 4294967295) | 1;
    let i = 0;
    for (; i + 4 <= size; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      out.writeInt32LE(x | 0, i);
    }
    for (; i < size; i += 1) out[i] = this.int(0, 255);
    return out;
  }
}
