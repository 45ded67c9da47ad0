import { createHash, randomUUID } from 'node:crypto';
import { finished, type Readable } from 'node:stream';
import { isHospitalId } from '../../certs/index.ts';
import { CONTENT_TYPE_PATTERN, hexDigest, ID_PATTERN, sha256Hex } from '../../ledger/index.ts';
import { scopeOf, PURPOSES, type Purpose } from '../consent/model.ts';
import { parsePatientId, patientHash, type PatientName } from '../consent/patient.ts';
import { RecipientRevokedError } from '../engine/peers.ts';
import { AgentError } from '../errors.ts';
import { checkDicomPatient, peekDicomPatient, readDicomPatient } from '../dicom/index.ts';
import { DEFAULT_MAX_FHIR_BYTES } from '../fhir/bundle.ts';
import { mainThreadValidator, type FhirValidator } from '../fhir/validation-pool.ts';
import { scopeRefusalAsOutcome } from '../consent/outcome.ts';
import { narrowNeeds } from '../consent/scope.ts';
import { requestFingerprint, type ExchangeRecord, type ExchangeStore } from '../store/exchanges.ts';
import type { Outbox, StoredBody } from '../store/outbox.ts';
import type { LiveSend, ReleaseGate } from '../engine/index.ts';

/** DICOM Part 10: its Patient ID is checked against the request's patient. */
const DICOM = 'application/dicom';

/** What the EHR asks for when it submits an exchange. */
export interface SubmitRequest {
  principal: string;
  idempotencyKey?: string | undefined;
  to: string;
  patientId: string;
  consentId: string;
  purpose: string;
  contentType: string;
  /** The accepted incoming records request this exchange answers (checked by the caller), if any. */
  requestId?: string | undefined;
  /** The body's declared length (Content-Length), when known. */
  length?: number | undefined;
  body: Readable;
}

/** Reads a body of exactly `length` bytes into memory. */
function readExactly(body: Readable, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let n = 0;
    const onData = (chunk: Buffer): void => {
      n += chunk.length;
      if (n <= length) parts.push(chunk);
    };
    body.on('data', onData);
    finished(body, (err) => {
      body.off('data', onData);
      if (err) reject(err);
      else if (n !== length) reject(new AgentError('ERR_BAD_REQUEST', `the body is ${n} bytes, its Content-Length says ${length}`));
      else resolve(parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, n));
    });
  });
}

/**
 * What a person reads of a receipt beside the signed receipt itself (kept
 * as signed, base64url): the content hash the recipient signed as lowercase
 * hex, comparable with `sha256sum` and with `contentSha256`.
 */
function receiptShown(receipt: unknown): { receiptContentSha256?: string } {
  const hash = (receipt as { contentHash?: unknown } | null)?.contentHash;
  return typeof hash === 'string' ? { receiptContentSha256: hexDigest(hash) } : {};
}

/** Result of a submission: the exchange and whether this call created it. */
export interface Submitted {
  record: ExchangeRecord;
  created: boolean;
}

/**
 * Accepts exchanges from the EHR: checks the request and the consent before
 * reading the body, stores the body in the outbox (so an accepted exchange
 * survives a restart), validates FHIR Bundles and their scope, records the
 * exchange (idempotently) and wakes the engine.
 */
export class ExchangeService {
  constructor(
    private readonly o: {
      self: string;
      secret: Buffer;
      /** The hospital's own patient identifier system (`patients.identifierSystem`): what a bare patient id is a value of. */
      identifierSystem?: string | undefined;
      /** The Issuer of Patient ID the hospital's own DICOM writes (`patients.dicomIssuer`). */
      dicomIssuer?: string | undefined;
      /** The engine's consent gate: submissions are admitted by the rule the engine releases by. */
      gate: Pick<ReleaseGate, 'admit'>;
      store: ExchangeStore;
      outbox: Outbox;
      maxBytes: number;
      enqueue: (id: string) => void;
      /** Starts sending a binary body while it uploads (the engine's `live`); without it every body is sent after it is stored. */
      live?: (x: Pick<ExchangeRecord, 'id' | 'to' | 'contentType' | 'consentId' | 'patient'>) => Promise<LiveSend | undefined>;
      /** Bodies of a known length up to this many bytes are read into memory and stored inline (0 or absent: never). */
      inlineBodyBytes?: number;
      /** Cancels an exchange not yet released (the engine's `cancel`); without it, DELETE answers 404. */
      cancel?: (id: string) => Promise<ExchangeRecord>;
      /** True when the recipient is known only by revoked certificates (no longer a member): refused at once. */
      isRevoked?: (to: string) => Promise<boolean>;
      /** Throws (422 ERR_MEMBER_*) when the federation's member directory does not list the recipient as active. */
      member?: (to: string) => void;
      now?: () => Date;
      /** Where FHIR Bundles are validated (`limits.fhirValidationThreads`); absent: on the main thread. */
      validator?: FhirValidator;
    },
  ) {}

  /** Validates, stores and queues one exchange. */
  async submit(req: SubmitRequest): Promise<Submitted> {
    const contentType = req.contentType.split(';')[0]?.trim().toLowerCase() ?? '';
    if (!CONTENT_TYPE_PATTERN.test(contentType))
      throw new AgentError('ERR_UNSUPPORTED_MEDIA_TYPE', 'Content-Type must be a media type such as application/fhir+json or application/dicom');
    if (!isHospitalId(req.to)) throw new AgentError('ERR_BAD_REQUEST', 'recipient must be a hospital id');
    if (req.to === this.o.self) throw new AgentError('ERR_BAD_REQUEST', 'an exchange cannot be sent to this hospital itself');
    if (!ID_PATTERN.test(req.consentId)) throw new AgentError('ERR_BAD_REQUEST', 'consent id is malformed');
    if (!(PURPOSES as readonly string[]).includes(req.purpose)) throw new AgentError('ERR_BAD_REQUEST', `purpose must be one of ${PURPOSES.join(', ')}`);
    if (req.idempotencyKey !== undefined && !/^[\x21-\x7e]{1,128}$/.test(req.idempotencyKey))
      throw new AgentError('ERR_BAD_REQUEST', 'Idempotency-Key must be 1-128 visible ASCII characters');
    let hash: string;
    try {
      hash = patientHash(this.o.secret, req.patientId, this.o.identifierSystem);
    } catch {
      throw new AgentError('ERR_BAD_REQUEST', 'patient id must be 1-256 characters');
    }
    const purpose = req.purpose as Purpose;
    const isFhir = contentType === 'application/fhir+json';
    // A retry of a request that already created an exchange gets that exchange, whatever its consent says now
    // (revoked or expired since): nothing is stored or sent again.
    if (req.idempotencyKey !== undefined) {
      const earlier = await this.o.store.byIdempotencyKey(req.principal, req.idempotencyKey);
      if (earlier) return this.retried(earlier, req, { contentType, hash, purpose });
    }
    this.o.member?.(req.to);
    if (await this.o.isRevoked?.(req.to)) throw new RecipientRevokedError(req.to);
    const at = this.o.now?.() ?? new Date();
    // Refuse before a byte of the body is read when the consent cannot cover it.
    await this.o.gate.admit({ consentId: req.consentId, patientHash: hash, to: req.to, purpose, scope: isFhir ? undefined : scopeOf(contentType), at });

    const id = randomUUID();
    if (req.length !== undefined && req.length <= (this.o.inlineBodyBytes ?? 0)) {
      return this.submitInline(req, id, { contentType, hash, purpose, isFhir, at });
    }
    if (contentType === DICOM) {
      // The patient is read from the header before a byte is stored or sent; the study streams on behind it.
      const peeked = await peekDicomPatient(req.body);
      checkDicomPatient(peeked.patient, this.patientOf(req), this.o);
      req = { ...req, body: peeked.body };
    }
    // A FHIR Bundle must be validated whole before it may leave; any other body is sent while it uploads.
    const live = isFhir ? undefined : await this.o.live?.({ id, to: req.to, contentType, consentId: req.consentId, ...this.claim(req, contentType) });
    let stored: StoredBody;
    try {
      stored = await this.o.outbox.write(id, req.body, isFhir ? Math.min(this.o.maxBytes, DEFAULT_MAX_FHIR_BYTES) : this.o.maxBytes, live?.input);
    } catch (err) {
      live?.abandon();
      throw err;
    }
    try {
      let scope = scopeOf(contentType);
      if (isFhir) {
        scope = await this.fhirScope(stored.content ?? (await this.o.outbox.readAll(id, stored.bytes)), req);
        scope = await this.admitFhir({ consentId: req.consentId, patientHash: hash, to: req.to, purpose, scope, at });
      }
      const result = await this.o.store.create(
        {
          id,
          to: req.to,
          patientHash: hash,
          ...this.claim(req, contentType),
          consentId: req.consentId,
          purpose,
          contentType,
          scope,
          bytes: stored.bytes,
          contentSha256: stored.sha256,
          ...(req.requestId ? { requestId: req.requestId } : {}),
        },
        req.idempotencyKey ? { principal: req.principal, key: req.idempotencyKey } : undefined,
      );
      if (!result.created) {
        live?.abandon();
        await this.o.outbox.remove(id);
      } else if (live) live.commit(result.record);
      else this.o.enqueue(result.record.id);
      return result;
    } catch (err) {
      live?.abandon();
      await this.o.outbox.remove(id);
      throw err;
    }
  }

  /** Validates a FHIR Bundle and returns the scope it needs: its kinds of resource and sensitive labels (fhir/labels.ts). */
  private async fhirScope(bytes: Buffer, req: SubmitRequest): Promise<string[]> {
    return scopeOf('application/fhir+json', (await (this.o.validator ?? mainThreadValidator).check(bytes, this.patientOf(req))).kinds);
  }

  /**
   * Admits a FHIR Bundle's scope and returns it narrowed to what its consent
   * names ({@link narrowNeeds}), as the record keeps it; a refusal of its
   * kinds of data is answered as an OperationOutcome naming each one.
   */
  private async admitFhir(x: Parameters<Pick<ReleaseGate, 'admit'>['admit']>[0] & { scope: string[] }): Promise<string[]> {
    try {
      return narrowNeeds(x.scope, await this.o.gate.admit(x));
    } catch (err) {
      throw scopeRefusalAsOutcome(err);
    }
  }

  /**
   * The patient a FHIR Bundle or DICOM body was checked to be about, for the
   * envelope's signed metadata (the recipient checks the content against
   * it): `system|value` with the system spelled out, `|value` for none, a
   * bare value when any system matches. Other bodies name none.
   */
  private claim(req: SubmitRequest, contentType: string): { patient?: string } {
    if (contentType !== 'application/fhir+json' && contentType !== DICOM) return {};
    const p = this.patientOf(req);
    return { patient: p.system === undefined ? p.value : `${p.system}|${p.value}` };
  }

  /** Cancels exchange `id` before it is released to its recipient (ERR_NOT_FOUND, or ERR_CONFLICT with its state). */
  async cancel(id: string): Promise<ExchangeRecord> {
    if (!ID_PATTERN.test(id) || !this.o.cancel) throw new AgentError('ERR_NOT_FOUND', 'no such exchange');
    return this.o.cancel(id);
  }

  /** The patient the request names, as a FHIR Bundle's content must name it. */
  private patientOf(req: SubmitRequest): PatientName {
    return parsePatientId(req.patientId, this.o.identifierSystem);
  }

  /**
   * A small body of known length: read into memory, validated, and stored
   * with its record in one atomic, synced database write (no outbox file);
   * the engine sends such exchanges in batch envelopes.
   */
  private async submitInline(
    req: SubmitRequest,
    id: string,
    x: { contentType: string; hash: string; purpose: Purpose; isFhir: boolean; at: Date },
  ): Promise<Submitted> {
    const length = req.length as number;
    if (length > this.o.maxBytes) throw new AgentError('ERR_PAYLOAD_TOO_LARGE', `body exceeds the limit of ${this.o.maxBytes} bytes`);
    const body = await readExactly(req.body, length);
    if (x.contentType === DICOM) checkDicomPatient(readDicomPatient(body, true), this.patientOf(req), this.o);
    let scope = scopeOf(x.contentType);
    if (x.isFhir) {
      scope = await this.fhirScope(body, req);
      scope = await this.admitFhir({ consentId: req.consentId, patientHash: x.hash, to: req.to, purpose: x.purpose, scope, at: x.at });
    }
    const result = await this.o.store.create(
      {
        id,
        to: req.to,
        patientHash: x.hash,
        ...this.claim(req, x.contentType),
        consentId: req.consentId,
        purpose: x.purpose,
        contentType: x.contentType,
        scope,
        bytes: length,
        contentSha256: sha256Hex(body),
        ...(req.requestId ? { requestId: req.requestId } : {}),
      },
      req.idempotencyKey ? { principal: req.principal, key: req.idempotencyKey } : undefined,
      { body },
    );
    if (result.created) this.o.enqueue(result.record.id);
    return result;
  }

  /**
   * A request whose Idempotency-Key already created `earlier`: its body is
   * hashed (not stored) to tell a retry, answered with the earlier exchange,
   * from a different request under the same key (ERR_CONFLICT).
   */
  private async retried(earlier: ExchangeRecord, req: SubmitRequest, x: { contentType: string; hash: string; purpose: Purpose }): Promise<Submitted> {
    const digest = createHash('sha256');
    let bytes = 0;
    // Read to the end (past the earlier length without hashing), so the connection can carry the answer.
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer): void => {
        bytes += chunk.length;
        if (bytes <= earlier.bytes) digest.update(chunk);
      };
      req.body.on('data', onData);
      finished(req.body, (err) => {
        req.body.off('data', onData);
        if (err) reject(err);
        else resolve();
      });
    });
    const same =
      bytes === earlier.bytes &&
      requestFingerprint({
        to: req.to,
        patientHash: x.hash,
        ...this.claim(req, x.contentType),
        consentId: req.consentId,
        purpose: x.purpose,
        contentType: x.contentType,
        contentSha256: digest.digest('hex'),
      }) === earlier.requestFingerprint;
    if (!same) throw new AgentError('ERR_CONFLICT', 'Idempotency-Key was already used for a different request');
    return { record: earlier, created: false };
  }

  /** One exchange as the API shows it (no patient hash). */
  static view(r: ExchangeRecord): Record<string, unknown> {
    return {
      id: r.id,
      to: r.to,
      status: r.status,
      consentId: r.consentId,
      purpose: r.purpose,
      contentType: r.contentType,
      bytes: r.bytes,
      contentSha256: r.contentSha256,
      attempts: r.attempts,
      createdAt: r.createdAt,
      updatedAt: r.updatedAt,
      ...(r.nextAttemptAt ? { nextAttemptAt: r.nextAttemptAt } : {}),
      ...(r.failure ? { failure: r.failure } : {}),
      ...(r.receipt ? { receipt: r.receipt, ...receiptShown(r.receipt) } : {}),
    };
  }
}
