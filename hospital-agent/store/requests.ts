/** Records requests, outgoing and incoming, as this hospital keeps them. */
import { Mutex } from './mutex.ts';
import type { StateDb } from './state-db.ts';

/** A request for a patient's records, as the asking or the holding hospital keeps it. */
export interface RecordsRequest {
  id: string;
  direction: 'outgoing' | 'incoming';
  /** The other hospital: the holder for an outgoing request, the requester for an incoming one. */
  peer: string;
  purpose: string;
  scope: string[];
  status: 'sent' | 'accepted' | 'refused' | 'answered';
  createdAt: string;
  updatedAt: string;
  /** Incoming only: the patient as the requester named them (kept inside this hospital, for the EHR). */
  patientId?: string;
  /** Incoming and accepted: the local consent that covers the release. */
  consentId?: string;
  /** Refused: why (an ERR_CONSENT_* code). */
  code?: string;
}

/** See the module comment. */
export class RecordsRequests {
  private readonly table;
  private readonly mutex = new Mutex();

  constructor(db: StateDb) {
    this.table = db.table<RecordsRequest>('requests', 'json');
  }

  /** Stores a records request (outgoing or incoming). */
  async put(request: RecordsRequest): Promise<void> {
    await this.mutex.run(() => this.table.put(request.id, request));
  }

  /** One records request, or undefined. */
  get(id: string): Promise<RecordsRequest | undefined> {
    return this.table.get(id);
  }

  /** Records requests, newest first. */
  async list(direction?: 'outgoing' | 'incoming'): Promise<RecordsRequest[]> {
    const out: RecordsRequest[] = [];
    for await (const r of this.table.values()) if (!direction || r.direction === direction) out.push(r);
    return out.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  }
}
