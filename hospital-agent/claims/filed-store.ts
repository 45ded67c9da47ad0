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
export class FiledStore<R extends Filed> {
  private readonly table;
  private readonly byIdentifier;
  private readonly locks = new KeyedMutex();

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
      return next;
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
