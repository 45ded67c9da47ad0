/** Coverage eligibility requests as this member keeps them: sent (hospital) or received (insurer), with an index on the request's identifier. */
import type { StateDb } from '../store/state-db.ts';
import { Mutex } from '../store/mutex.ts';
import type { ClaimOutcome } from './model.ts';

/** One eligibility request. */
export interface EligibilityRecord {
  /** The federation's request id (a UUID both agents file it under). */
  id: string;
  direction: 'outgoing' | 'incoming';
  /** The insurer of an outgoing request, the hospital of an incoming one. */
  peer: string;
  /** `system|value` of the request's identifier. */
  identifier: string;
  /** `sent` until the insurer's first response; then its latest outcome. */
  status: 'sent' | ClaimOutcome;
  /** SHA-256 of the CoverageEligibilityRequest's JCS bytes, base64url. */
  hash: string;
  createdAt: string;
  updatedAt: string;
  /** Outgoing: the consent it was sent under and the patient's keyed hash. */
  consentId?: string;
  patientHash?: string;
  /** The CoverageEligibilityRequest and its Coverage (kept inside this member). */
  request: Record<string, unknown>;
  coverage: Record<string, unknown>;
  /** Outgoing and not yet answered: the sealed request, sent again until the insurer answers. */
  jwe?: string;
  /** The signed CoverageEligibilityResponses (compact JWS), oldest first. */
  responses: string[];
}

/** A request as lists show it (without the FHIR resources and the signatures). */
export type EligibilitySummary = Omit<EligibilityRecord, 'request' | 'coverage' | 'jwe' | 'responses'> & { responses: number };

/** The summary of a request. */
export function summarizeEligibility(r: EligibilityRecord): EligibilitySummary {
  const { request: _r, coverage: _c, jwe: _j, responses, ...rest } = r;
  return { ...rest, responses: responses.length };
}

/** See the module comment. */
export class EligibilityStore {
  private readonly table;
  private readonly byIdentifier;
  private readonly mutex = new Mutex();

  constructor(private readonly db: StateDb) {
    this.table = db.table<EligibilityRecord>('eligibility', 'json');
    this.byIdentifier = db.table<string>('eligibility-identifiers', 'utf8');
  }

  private static key(r: Pick<EligibilityRecord, 'direction' | 'peer' | 'identifier'>): string {
    return `${r.direction}|${r.peer}|${r.identifier}`;
  }

  /** Files a new request unless one of the same identifier (peer, direction) is filed; returns what is filed. */
  async create(record: EligibilityRecord): Promise<{ record: EligibilityRecord; created: boolean }> {
    return this.mutex.run(async () => {
      const id = await this.byIdentifier.get(EligibilityStore.key(record));
      const existing = id ? await this.table.get(id) : undefined;
      if (existing) return { record: existing, created: false };
      await this.db.write([
        { type: 'put', key: record.id, value: record, sublevel: this.table },
        { type: 'put', key: EligibilityStore.key(record), value: record.id, sublevel: this.byIdentifier },
      ]);
      return { record, created: true };
    });
  }

  /** Changes a filed request under the lock (`change` returns undefined to leave it). */
  async update(id: string, change: (r: EligibilityRecord) => EligibilityRecord | undefined): Promise<EligibilityRecord | undefined> {
    return this.mutex.run(async () => {
      const r = await this.table.get(id);
      const next = r && change(r);
      if (!next) return undefined;
      await this.db.write([{ type: 'put', key: id, value: next, sublevel: this.table }]);
      return next;
    });
  }

  /** The request filed under an identifier, if any. */
  async byRequestIdentifier(direction: EligibilityRecord['direction'], peer: string, identifier: string): Promise<EligibilityRecord | undefined> {
    const id = await this.byIdentifier.get(EligibilityStore.key({ direction, peer, identifier }));
    return id ? this.table.get(id) : undefined;
  }

  /** One request, or undefined. */
  get(id: string): Promise<EligibilityRecord | undefined> {
    return this.table.get(id);
  }

  /** Requests, newest first. */
  async list(direction?: EligibilityRecord['direction']): Promise<EligibilityRecord[]> {
    const out: EligibilityRecord[] = [];
    for await (const r of this.table.values()) if (!direction || r.direction === direction) out.push(r);
    return out.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  }
}
