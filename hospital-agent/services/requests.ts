import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { HOSPITAL_ID_PATTERN, jcs } from '../../certs/index.ts';
import { SCOPE_PATTERN } from '../../ledger/index.ts';
import { PURPOSES, type Purpose } from '../consent/model.ts';
import { patientHash } from '../consent/patient.ts';
import { openSignedMessage, sealSignedMessage, type LocalKeys } from '../crypto/index.ts';
import { PeerKeyUnavailableError, type PeerDirectory } from '../engine/peers.ts';
import type { EngineLogger } from '../engine/index.ts';
import type { WireMessage } from '../engine/wire.ts';
import { AgentError } from '../errors.ts';
import type { RecordsRequest, RecordsRequests } from '../store/requests.ts';
import type { ConsentService } from './consents.ts';

/** How old a records request may be when it arrives. */
export const MAX_REQUEST_AGE_MS = 10 * 60_000;

const payloadSchema = z.strictObject({
  v: z.literal(1),
  id: z.uuid(),
  from: z.string().regex(HOSPITAL_ID_PATTERN),
  to: z.string().regex(HOSPITAL_ID_PATTERN),
  // As patientHash takes it: trimmed, 1-256 characters.
  patientId: z.string().trim().min(1).max(256),
  purpose: z.enum(PURPOSES),
  scope: z.array(z.string().regex(SCOPE_PATTERN)).min(1).max(64),
  created: z.iso.datetime(),
});

/**
 * Records requests between hospitals. The requester names the patient only
 * inside a JWE to the holder's CA-bound X25519 key, signed (JWS) with its
 * Ed25519 key, so the relay can neither read nor forge it. The holder checks
 * its own consents: a covered request is handed to its EHR (webhook and
 * `GET /v1/requests`), which answers with an ordinary exchange; an uncovered
 * one is refused with the ERR_CONSENT_* code. Only ids, statuses and codes
 * travel back.
 */
export class RequestService {
  constructor(
    private readonly o: {
      self: string;
      secret: Buffer;
      /** The hospital's own patient identifier system (`patients.identifierSystem`): what a bare patient id is a value of. */
      identifierSystem?: string | undefined;
      store: RecordsRequests;
      consents: ConsentService;
      peers: PeerDirectory;
      keys: () => LocalKeys;
      send: (to: string, message: WireMessage) => void;
      logger: EngineLogger;
      onIncoming?: (request: RecordsRequest) => void;
      now?: () => Date;
    },
  ) {}

  private now(): Date {
    return this.o.now?.() ?? new Date();
  }

  /** Asks `holder` for a patient's records. */
  async create(input: { holder: string; patientId: string; purpose: Purpose; scope: string[] }): Promise<RecordsRequest> {
    if (input.holder === this.o.self) throw new AgentError('ERR_BAD_REQUEST', 'a hospital cannot request records from itself');
    let bundle;
    try {
      bundle = await this.o.peers.encryptionBundle(input.holder);
    } catch (err) {
      if (err instanceof PeerKeyUnavailableError)
        throw new AgentError('ERR_RELAY_UNAVAILABLE', `cannot reach '${input.holder}' to deliver the request; try again later`);
      throw err;
    }
    const now = this.now().toISOString();
    const id = randomUUID();
    const keys = this.o.keys();
    const payload = {
      v: 1 as const,
      id,
      from: this.o.self,
      to: input.holder,
      patientId: input.patientId.trim(),
      purpose: input.purpose,
      scope: input.scope,
      created: now,
    };
    const jwe = await sealSignedMessage(
      jcs(payload),
      { key: keys.signing.privateKey, kid: keys.signingKid },
      { key: bundle.encryptionKey, kid: bundle.encryptionKid },
    );
    const request: RecordsRequest = {
      id,
      direction: 'outgoing',
      peer: input.holder,
      purpose: input.purpose,
      scope: input.scope,
      status: 'sent',
      createdAt: now,
      updatedAt: now,
    };
    await this.o.store.put(request);
    this.o.send(input.holder, { t: 'records.request', id, jwe });
    return request;
  }

  /** Handles a records request from `from` (decrypt, verify, check consent, answer). */
  async onRequest(from: string, message: Extract<WireMessage, { t: 'records.request' }>): Promise<void> {
    let payload: z.infer<typeof payloadSchema>;
    try {
      const keys = this.o.keys();
      const lookup = this.o.peers.signerLookup();
      const bytes = await openSignedMessage(message.jwe, keys.encryption.privateKey, async (kid) => (await lookup(from, kid, this.now()))?.signingKey);
      payload = payloadSchema.parse(JSON.parse(Buffer.from(bytes).toString('utf8')));
      if (payload.from !== from || payload.to !== this.o.self || payload.id !== message.id)
        throw new Error('request is not addressed from the sender to this hospital');
      if (Math.abs(this.now().getTime() - Date.parse(payload.created)) > MAX_REQUEST_AGE_MS) throw new Error('request is too old');
    } catch (err) {
      this.o.logger.warn({ from, request: message.id, err: { message: (err as Error).message } }, 'records request rejected');
      return;
    }
    if (await this.o.store.get(payload.id)) return;
    const now = this.now().toISOString();
    const found = await this.o.consents.findCovering({
      patientHash: patientHash(this.o.secret, payload.patientId, this.o.identifierSystem),
      recipient: from,
      purpose: payload.purpose,
      scope: payload.scope,
      at: this.now(),
    });
    const base = { id: payload.id, direction: 'incoming' as const, peer: from, purpose: payload.purpose, scope: payload.scope, createdAt: now, updatedAt: now };
    if ('consent' in found) {
      const request: RecordsRequest = { ...base, status: 'accepted', patientId: payload.patientId, consentId: found.consent.id };
      await this.o.store.put(request);
      this.o.send(from, { t: 'request.status', id: payload.id, status: 'accepted' });
      this.o.logger.info({ from, request: payload.id, consent: found.consent.id }, 'records request accepted; handed to the EHR');
      this.o.onIncoming?.(request);
    } else {
      await this.o.store.put({ ...base, status: 'refused', code: found.refusal.code });
      this.o.send(from, { t: 'request.status', id: payload.id, status: 'refused', code: found.refusal.code });
      this.o.logger.info({ from, request: payload.id, code: found.refusal.code }, 'records request refused');
    }
  }

  /** Records the holder's answer to one of our requests: accepted or refused, then answered by an exchange (each named). */
  async onStatus(from: string, message: Extract<WireMessage, { t: 'request.status' }>): Promise<void> {
    const r = await this.o.store.get(message.id);
    if (!r || r.direction !== 'outgoing' || r.peer !== from) return;
    if (message.status === 'answered') {
      if (r.status === 'refused' || !message.exchange || r.exchanges?.includes(message.exchange)) return;
      const exchanges = [...(r.exchanges ?? []), message.exchange].slice(-64);
      await this.o.store.put({ ...r, status: 'answered', exchanges, updatedAt: this.now().toISOString() });
      return;
    }
    if (r.status !== 'sent') return;
    await this.o.store.put({ ...r, status: message.status, ...(message.code ? { code: message.code } : {}), updatedAt: this.now().toISOString() });
  }

  /** Whether an exchange to `to` can answer incoming request `requestId` (the request is from `to` and was accepted). */
  async answerable(requestId: string, to: string): Promise<boolean> {
    const r = await this.o.store.get(requestId);
    return r?.direction === 'incoming' && r.peer === to && (r.status === 'accepted' || r.status === 'answered');
  }

  /**
   * Marks an incoming request answered by exchange `exchangeId` sent to its
   * requester, and tells the requester which exchange answers it (its inbox
   * item of that id then names the request).
   */
  async markAnswered(requestId: string, to: string, exchangeId?: string): Promise<void> {
    const r = await this.o.store.get(requestId);
    if (!r || r.direction !== 'incoming' || r.peer !== to) throw new AgentError('ERR_NOT_FOUND', 'no such incoming request from that hospital');
    if (r.status !== 'accepted' && r.status !== 'answered') return;
    const exchanges = exchangeId && !r.exchanges?.includes(exchangeId) ? [...(r.exchanges ?? []), exchangeId].slice(-64) : r.exchanges;
    await this.o.store.put({ ...r, status: 'answered', ...(exchanges ? { exchanges } : {}), updatedAt: this.now().toISOString() });
    if (exchangeId) this.o.send(to, { t: 'request.status', id: requestId, status: 'answered', exchange: exchangeId });
  }
}
