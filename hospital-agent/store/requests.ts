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
  /** Answered: the exchanges that answered it (sent by the holder; for an outgoing request, inbox items of these ids). */
  exchanges?: string[];
}

/** See the module comment. */
export class RecordsRequests {
  private readonly table;
  /** Exchange id -> the outgoing request it answers (so an inbox item can name its request). */
  private readonly byAnswer;
  private readonly mutex = new Mutex();

  constructor(private readonly db: StateDb) {
    this.table = db.table<RecordsRequest>('requests', 'json');
    this.byAnswer = db.table<string>('request-answers', 'utf8');
  }

  /** Stores a records request (outgoing or incoming), with the answer index of an outgoing one, in one batch. */
  async put(request: RecordsRequest): Promise<void> {
    await this.mutex.run(() =>
      this.db.write([
        { type: 'put', key: request.id, value: request, sublevel: this.table },
        ...(request.direction === 'outgoing'
          ? (request.exchanges ?? []).map((x) => ({ type: 'put' as const, key: x, value: request.id, sublevel: this.byAnswer }))
          : []),
      ]),
    );
  }

  /** The outgoing request exchange `exchangeId` answers, if any. */
  async answeredBy(exchangeId: string): Promise<string | undefined> {
    return this.byAnswer.get(exchangeId);
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
