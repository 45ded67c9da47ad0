/** Runs async sections one at a time, in call order. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();

  /** Runs `fn` after every section queued before it has settled. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

/**
 * One lock per key: sections on the same key run one at a time, in call
 * order; sections on different keys run at once. A section may hold several
 * keys (taken together, so two sections that share one key never interleave).
 * A key's entry is dropped when its last section settles, so the map holds
 * only the keys in use.
 */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>();

  /** Runs `fn` after every section queued before it on any of `keys` has settled. */
  run<T>(keys: string | readonly string[], fn: () => Promise<T>): Promise<T> {
    const list = typeof keys === 'string' ? [keys] : [...new Set(keys)];
    const before = list.map((k) => this.tails.get(k)).filter((p): p is Promise<unknown> => p !== undefined);
    const next = (before.length === 0 ? Promise.resolve() : Promise.all(before)).then(fn, fn);
    const tail = next.catch(() => undefined);
    for (const k of list) this.tails.set(k, tail);
    void tail.then(() => {
      for (const k of list) if (this.tails.get(k) === tail) this.tails.delete(k);
    });
    return next;
  }

  /** Keys with a section running or queued (for tests and metrics). */
  get size(): number {
    return this.tails.size;
  }
}
