/** Claims as this member keeps them: sent (hospital) or received (insurer), with an index on the Claim's identifier. */
import type { StateDb } from '../store/state-db.ts';
import { Mutex } from '../store/mutex.ts';
import type { ClaimOutcome } from './model.ts';

/** One claim. */
export interface ClaimRecord {
  /** The federation's claim id (a UUID both agents file it under). */
  id: string;
  direction: 'outgoing' | 'incoming';
  /** The other member: the insurer of an outgoing claim, the hospital of an incoming one. */
  peer: string;
  /** `system|value` of the Claim's identifier. */
  identifier: string;
  /** `sent` until the insurer's first response; then its latest outcome. */
  status: 'sent' | ClaimOutcome;
  /** The claimed total, minor units. */
  amount: number;
  currency: string;
  /** Benefit paid by the latest response, minor units. */
  paid?: number;
  /** SHA-256 of the Claim's JCS bytes, base64url. */
  hash: string;
  createdAt: string;
  updatedAt: string;
  /** Outgoing: the consent it was sent under and the patient's keyed hash. */
  consentId?: string;
  patientHash?: string;
  /** The Claim and its Coverage (kept inside this member, for its own systems). */
  claim: Record<string, unknown>;
  coverage: Record<string, unknown>;
  /** Outgoing and not yet answered: the sealed claim, sent again until the insurer answers. */
  jwe?: string;
  /** The signed ClaimResponses (compact JWS), oldest first. */
  responses: string[];
}

/** A claim as lists show it (without the FHIR resources and the signatures). */
export type ClaimSummary = Omit<ClaimRecord, 'claim' | 'coverage' | 'jwe' | 'responses'> & { responses: number };

/** The summary of a claim. */
export function summarize(r: ClaimRecord): ClaimSummary {
  const { claim: _c, coverage: _v, jwe: _j, responses, ...rest } = r;
  return { ...rest, responses: responses.length };
}

/** See the module comment. */
export class ClaimStore {
  private readonly table;
  /** `direction|peer|identifier` -> claim id. */
  private readonly byIdentifier;
  private readonly mutex = new Mutex();

  constructor(private readonly db: StateDb) {
    this.table = db.table<ClaimRecord>('claims', 'json');
    this.byIdentifier = db.table<string>('claim-identifiers', 'utf8');
  }

  private static key(r: Pick<ClaimRecord, 'direction' | 'peer' | 'identifier'>): string {
    return `${r.direction}|${r.peer}|${r.identifier}`;
  }

  /**
   * Files a new claim unless one of the same identifier (and peer and
   * direction) is filed: returns the claim that is filed, and whether it is
   * the one given. Checked and written under one lock.
   */
  async create(record: ClaimRecord): Promise<{ record: ClaimRecord; created: boolean }> {
    return this.mutex.run(async () => {
      const id = await this.byIdentifier.get(ClaimStore.key(record));
      const existing = id ? await this.table.get(id) : undefined;
      if (existing) return { record: existing, created: false };
      await this.db.write([
        { type: 'put', key: record.id, value: record, sublevel: this.table },
        { type: 'put', key: ClaimStore.key(record), value: record.id, sublevel: this.byIdentifier },
      ]);
      return { record, created: true };
    });
  }

  /** Changes a filed claim under the lock (`change` returns undefined to leave it). */
  async update(id: string, change: (r: ClaimRecord) => ClaimRecord | undefined): Promise<ClaimRecord | undefined> {
    return this.mutex.run(async () => {
      const r = await this.table.get(id);
      const next = r && change(r);
      if (!next) return undefined;
      await this.db.write([{ type: 'put', key: id, value: next, sublevel: this.table }]);
      return next;
    });
  }

  /** The claim filed under an identifier, if any. */
  async byClaimIdentifier(direction: ClaimRecord['direction'], peer: string, identifier: string): Promise<ClaimRecord | undefined> {
    const id = await this.byIdentifier.get(ClaimStore.key({ direction, peer, identifier }));
    return id ? this.table.get(id) : undefined;
  }

  /** One claim, or undefined. */
  get(id: string): Promise<ClaimRecord | undefined> {
    return this.table.get(id);
  }

  /** Claims, newest first. */
  async list(direction?: ClaimRecord['direction']): Promise<ClaimRecord[]> {
    const out: ClaimRecord[] = [];
    for await (const r of this.table.values()) if (!direction || r.direction === direction) out.push(r);
    return out.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  }
}
