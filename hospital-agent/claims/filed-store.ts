/** A member's filed records of one kind (claims, eligibility requests), indexed by direction, peer and the FHIR identifier they carry. */
import type { StateDb } from '../store/state-db.ts';
import { KeyedMutex } from '../store/mutex.ts';

/** What every filed record has: an id both agents file it under, its direction and peer, and its `system|value` identifier. */
export interface Filed {
  id: string;
  direction: 'outgoing' | 'incoming';
  peer: string;
  identifier: string;
  createdAt: string;
}

/**
 * Records in table `name`, with `direction|peer|identifier` -> id in table `${indexName}`. Writes are locked per
 * record id and per identifier, not store-wide: records of different claims are filed and changed at once.
 */
/** Callers waiting at once for a change of some record (long polls): beyond this, a wait ends at once. */
export const MAX_CHANGE_WAITERS = 10_000;

export class FiledStore<R extends Filed> {
  private readonly table;
  private readonly byIdentifier;
  private readonly locks = new KeyedMutex();
  /** Record id -> callbacks of those waiting for its next change ({@link nextChange}). */
  private readonly waiters = new Map<string, Set<() => void>>();
  private waiting = 0;

  constructor(
    private readonly db: StateDb,
    name: string,
    indexName: string,
  ) {
    this.table = db.table<R>(name, 'json');
    this.byIdentifier = db.table<string>(indexName, 'utf8');
  }

  private static key(r: Pick<Filed, 'direction' | 'peer' | 'identifier'>): string {
    return `${r.direction}|${r.peer}|${r.identifier}`;
  }

  /**
   * Files a new record unless one of the same identifier (and peer and
   * direction) is filed: returns the record that is filed, and whether it is
   * the one given. Checked and written under the locks of its identifier and its id.
   */
  async create(record: R): Promise<{ record: R; created: boolean }> {
    const key = FiledStore.key(record);
    return this.locks.run([`i:${key}`, `r:${record.id}`], async () => {
      const id = await this.byIdentifier.get(key);
      const existing = id ? await this.table.get(id) : undefined;
      if (existing) return { record: existing, created: false };
      await this.db.write([
        { type: 'put', key: record.id, value: record, sublevel: this.table },
        { type: 'put', key, value: record.id, sublevel: this.byIdentifier },
      ]);
      return { record, created: true };
    });
  }

  /** Changes a filed record under its id's lock (`change` returns undefined to leave it; it must not change the identifier). */
  async update(id: string, change: (r: R) => R | undefined): Promise<R | undefined> {
    return this.locks.run(`r:${id}`, async () => {
      const r = await this.table.get(id);
      const next = r && change(r);
      if (!next) return undefined;
      await this.db.write([{ type: 'put', key: id, value: next, sublevel: this.table }]);
      this.changed(id);
      return next;
    });
  }

  /** Wakes everyone waiting for a change of `id`. */
  private changed(id: string): void {
    const set = this.waiters.get(id);
    if (!set) return;
    this.waiters.delete(id);
    for (const wake of set) wake();
  }

  /**
   * Resolves true at the next committed change of record `id`, false after
   * `ms` or when `signal` aborts (the client went away), or at once when
   * {@link MAX_CHANGE_WAITERS} callers already wait. Start waiting before
   * reading the record, so a change between the read and the wait is not missed.
   */
  nextChange(id: string, ms: number, signal?: AbortSignal): Promise<boolean> {
    if (this.waiting >= MAX_CHANGE_WAITERS || signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      let set = this.waiters.get(id);
      if (!set) this.waiters.set(id, (set = new Set()));
      this.waiting += 1;
      let settled = false;
      const done = (changed: boolean): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.waiting -= 1;
        const s = this.waiters.get(id);
        s?.delete(wake);
        if (s?.size === 0) this.waiters.delete(id);
        resolve(changed);
      };
      const wake = (): void => done(true);
      const onAbort = (): void => done(false);
      const timer = setTimeout(() => done(false), ms);
      signal?.addEventListener('abort', onAbort, { once: true });
      set.add(wake);
    });
  }

  /** The record filed under an identifier, if any. */
  protected async filedUnder(direction: R['direction'], peer: string, identifier: string): Promise<R | undefined> {
    const id = await this.byIdentifier.get(FiledStore.key({ direction, peer, identifier }));
    return id ? this.table.get(id) : undefined;
  }

  /** One record, or undefined. */
  get(id: string): Promise<R | undefined> {
    return this.table.get(id);
  }

  /** Records, newest first. */
  async list(direction?: R['direction']): Promise<R[]> {
    const out: R[] = [];
    for await (const r of this.table.values()) if (!direction || r.direction === direction) out.push(r);
    return out.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  }
}
