// One job: the hospital's end of patient channels: enrolment by one-time code, authenticated sessions, consent requests
// answered with the patient's signature, revocations, the patient's access log and their records, all end to end encrypted.
import { createHash, randomBytes, randomUUID, timingSafeEqual, type webcrypto } from 'node:crypto';
import type { Logger } from 'pino';
import QRCode from 'qrcode';
import type { Identity } from '../../certs/index.ts';
import type { Ledger } from '../../ledger/index.ts';
import {
  acceptPatientSession,
  b64u,
  jwkThumbprint,
  publicEcJwk,
  sessionAuthPayload,
  verifyConsentSignature,
  verifyJws,
  type EcPublicJwk,
  type PatientSession,
} from '../../patient-app/protocol.js';
import type { Purpose } from '../consent/model.ts';
import { parsePatientId, patientHash } from '../consent/patient.ts';
import { AgentError } from '../errors.ts';
import { mainThreadValidator, type FhirValidator } from '../fhir/validation-pool.ts';
import type { ConsentService } from '../services/consents.ts';
import { issuePatientCredential, newChannel } from './credential.ts';
import { signedConsentFhir, type ConsentTerms } from './signed-consent.ts';
import { PatientStore, type ConsentRequestRecord, type DeviceRecord, type RecordsCopy } from './store.ts';

/** How long a one-time enrolment code is good for. */
export const DEFAULT_CODE_SECONDS = 15 * 60;
/** How far the time a patient says they signed at may be from the agent's clock. */
export const SIGNED_AT_SKEW_MS = 5 * 60 * 1000;
/**
 * Largest copy of a patient's records the EHR may push: it goes to the device as one sealed message, and the relay's
 * hub frames are at most `limits.maxFrame` (1 MiB by default).
 */
export const MAX_RECORDS_BYTES = 768 * 1024;
/**
 * Largest records copy once written as the JSON string the message to the device carries (escaping can double it:
 * each escaped quote or backslash in the Bundle's strings takes four bytes instead of two): the relay's default
 * `limits.maxFrame` (1 MiB), less 1 KiB for the message's other fields, the seal (28 bytes) and the hub frame head
 * (23). A bigger frame makes the relay close the hub, and with it every patient session of the hospital.
 */
export const MAX_RECORDS_MESSAGE_BYTES = 1024 * 1024 - 1024;
/** Messages a channel may queue before the agent closes it (a flood from one device cannot hold the agent). */
const MAX_QUEUED = 64;

/** What the patient service is built from. */
export interface PatientServiceOptions {
  feed: string;
  identity: () => Identity;
  store: PatientStore;
  consents: ConsentService;
  ledger: Ledger;
  secret: Buffer;
  identifierSystem?: string | undefined;
  /** The agent's patient-channel key (ECDH P-256), whose public half the enrolment code pins. */
  agentKey: { privateKey: webcrypto.CryptoKey; publicJwk: EcPublicJwk };
  /** Where the relay serves the patient app (`https://relay.example/patient/`). */
  appUrl: string;
  /**
   * Where the patient's own records come from when the app asks, before the copy the EHR pushed (`pushRecords`): a FHIR
   * Bundle, or undefined to fall back to the pushed copy.
   */
  records?: ((patientId: string) => Promise<Record<string, unknown> | undefined>) | undefined;
  log: Logger;
  now?: () => Date;
  codeSeconds?: number;
  /** Where pushed records copies are validated (`limits.fhirValidationThreads`); absent: on the main thread. */
  validator?: FhirValidator;
}

/** What `enrol` hands the hospital to give the patient: the link, as a QR code too, and when it stops working. */
export interface Enrolment {
  code: string;
  link: string;
  qrSvg: string;
  expiresAt: string;
}

/** Terms of a consent request. */
export interface RequestTerms {
  grantees: string[];
  purposes: Purpose[];
  scope: string[];
  categories?: string[];
  labels?: string[];
  validFrom?: string;
  validUntil: string;
}

interface Channel {
  session?: PatientSession;
  epk?: EcPublicJwk;
  device?: DeviceRecord;
  thumb?: string;
  queue: Promise<void>;
  queued: number;
}

const sha256 = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex');
/** True when `bundle`, as the JSON string the records message carries, fits {@link MAX_RECORDS_MESSAGE_BYTES}. */
const fitsOneMessage = (bundle: string): boolean => Buffer.byteLength(JSON.stringify(bundle), 'utf8') <= MAX_RECORDS_MESSAGE_BYTES;
const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 && v.length < 16384 ? v : undefined);

/** The agent side of patient channels. Frames come from the patient hub (hub.ts); `send` goes back through it. */
export class PatientService {
  private readonly channels = new Map<string, Channel>();
  private readonly now: () => Date;
  /** Sends sealed bytes to a channel, or closes it (bytes undefined); set by the hub. */
  send: (channel: string, bytes: Uint8Array | undefined) => void = () => undefined;

  constructor(private readonly o: PatientServiceOptions) {
    this.now = o.now ?? (() => new Date());
  }

  private hash(patientId: string): string {
    return patientHash(this.o.secret, patientId, this.o.identifierSystem);
  }

  /**
   * A one-time enrolment for `patientId`: a random code (only its SHA-256 is stored), bound to a fresh enrolment
   * channel, short-lived and single-use; the link carries the code, the enrolment credential and the agent's key.
   */
  async enrol(patientId: string): Promise<Enrolment> {
    this.hash(patientId); // refuses a malformed id before anything is stored
    const code = randomBytes(16).toString('base64url');
    const channel = newChannel();
    const seconds = this.o.codeSeconds ?? DEFAULT_CODE_SECONDS;
    const now = this.now();
    const expiresAt = new Date(now.getTime() + seconds * 1000).toISOString();
    await this.o.store.codes.put(sha256(code), { patientId, channel, expiresAt });
    const cred = await issuePatientCredential(this.o.identity(), { use: 'enrol', channel, lifetimeSeconds: seconds, now, embedCertificate: false });
    const payload = { h: this.o.feed, k: this.o.agentKey.publicJwk, c: code, cred };
    const link = `${this.o.appUrl}#enrol=${b64u(Buffer.from(JSON.stringify(payload)))}`;
    const qrSvg = await QRCode.toString(link, { type: 'svg', errorCorrectionLevel: 'L', margin: 2 });
    this.o.log.info({ expiresAt }, 'patient enrolment code issued');
    return { code, link, qrSvg, expiresAt };
  }

  /** Records a consent request for `patientId` (pending until the patient answers) and shows it in their open sessions. */
  async requestConsent(patientId: string, terms: RequestTerms): Promise<ConsentRequestRecord> {
    this.hash(patientId);
    const now = this.now();
    const request: ConsentRequestRecord = {
      id: randomUUID(),
      patientId,
      grantees: terms.grantees,
      purposes: terms.purposes,
      scope: terms.scope,
      ...(terms.categories ? { categories: terms.categories } : {}),
      ...(terms.labels ? { labels: terms.labels } : {}),
      validFrom: new Date(terms.validFrom ?? now).toISOString(),
      validUntil: new Date(terms.validUntil).toISOString(),
      createdAt: now.toISOString(),
      status: 'pending',
    };
    await this.o.store.requests.put(request.id, request);
    for (const [channel, c] of this.channels) {
      if (c.device?.patientId !== patientId) continue;
      // In the channel's queue: each seal takes the next counter, and the app opens only rising counters, so sealed
      // messages must leave in the order they were sealed (a seal beside the queue's could overtake it).
      c.queue = c.queue.then(() => this.reply(channel, { t: 'request', request: this.requestView(request) })).catch(() => undefined);
    }
    return request;
  }

  /**
   * The EHR's copy of a patient's own records: a FHIR R4 Bundle (validated, about this patient and no other) kept for
   * their enrolled device, and sent at once, end to end encrypted, to every open session of theirs. Refused with
   * ERR_CONFLICT while no device is enrolled for the patient. Answers how many sessions got it now.
   */
  async pushRecords(patientId: string, bytes: Buffer): Promise<{ sha256: string; entries: number; receivedAt: string; delivered: number }> {
    const hash = this.hash(patientId);
    if (bytes.length > MAX_RECORDS_BYTES) throw new AgentError('ERR_PAYLOAD_TOO_LARGE', `a records copy is at most ${MAX_RECORDS_BYTES} bytes`);
    const summary = await (this.o.validator ?? mainThreadValidator).check(bytes, parsePatientId(patientId, this.o.identifierSystem));
    if (!fitsOneMessage(bytes.toString('utf8'))) {
      throw new AgentError(
        'ERR_PAYLOAD_TOO_LARGE',
        `a records copy goes to the device as one JSON string of at most ${MAX_RECORDS_MESSAGE_BYTES} bytes, and this one is longer once escaped (its quotes, backslashes and line breaks)`,
      );
    }
    const enrolled = (await PatientStore.values<DeviceRecord>(this.o.store.devices)).some((d) => d.patientId === patientId);
    if (!enrolled) throw new AgentError('ERR_CONFLICT', 'no device is enrolled for this patient: enrol one first (POST /v1/patients/enrolments)');
    const copy: RecordsCopy = {
      patientId,
      bundle: bytes.toString('utf8'),
      sha256: createHash('sha256').update(bytes).digest('hex'),
      entries: summary.entries,
      receivedAt: this.now().toISOString(),
    };
    await this.o.store.records.put(hash, copy);
    let delivered = 0;
    for (const [channel, c] of this.channels) {
      const thumb = c.thumb;
      if (c.device?.patientId !== patientId || !thumb) continue;
      // In the channel's queue: sealed messages must leave in counter order.
      const sent = c.queue.then(() => this.sendRecords(channel, thumb, hash, copy.bundle, copy.receivedAt));
      c.queue = sent.catch(() => undefined);
      await sent;
      delivered++;
    }
    this.o.log.info({ entries: copy.entries, delivered }, 'patient records copy stored');
    return { sha256: copy.sha256, entries: copy.entries, receivedAt: copy.receivedAt, delivered };
  }

  /** Seals a records copy to one session and writes `patient.records` (keyed hash, device thumbprint, SHA-256 of the bytes). */
  private async sendRecords(channel: string, thumb: string, patient: string, bundle: string, receivedAt: string): Promise<void> {
    const sha256 = createHash('sha256').update(bundle, 'utf8').digest('hex');
    await this.o.ledger.append({ type: 'patient.records', body: { patient, device: thumb, hash: sha256 } });
    await this.reply(channel, { t: 'records', bundle, sha256, receivedAt });
  }

  /** The records copy for the app's "get a copy": from the configured source, else the one the EHR pushed. */
  private async recordsFor(patientId: string): Promise<{ bundle: string; receivedAt: string } | undefined> {
    const fetched = await this.o.records?.(patientId);
    if (fetched) return { bundle: JSON.stringify(fetched), receivedAt: this.now().toISOString() };
    const copy = await this.o.store.records.get(this.hash(patientId));
    return copy ? { bundle: copy.bundle, receivedAt: copy.receivedAt } : undefined;
  }

  /** A channel opened at the relay. */
  onOpen(channel: string): void {
    this.channels.set(channel, { queue: Promise.resolve(), queued: 0 });
  }

  /** A channel closed at the relay. */
  onClose(channel: string): void {
    this.channels.delete(channel);
  }

  /**
   * The hub connection to the relay closed: every channel went with it (the relay closes the patients' sockets), so none
   * is counted as delivered to, nor logged as having got a copy, until its device connects again.
   */
  onHubClose(): void {
    this.channels.clear();
  }

  /** Bytes from a patient: handled one at a time per channel. */
  onData(channel: string, bytes: Uint8Array): void {
    const c = this.channels.get(channel);
    if (!c) return;
    if (++c.queued > MAX_QUEUED) {
      this.channels.delete(channel);
      return this.send(channel, undefined);
    }
    c.queue = c.queue.then(async () => {
      c.queued--;
      try {
        await this.handle(channel, c, bytes);
      } catch (err) {
        const code = err instanceof AgentError ? err.code : 'ERR_BAD_REQUEST';
        this.o.log.info({ code }, 'patient message refused');
        if (!c.session) {
          this.channels.delete(channel);
          return this.send(channel, undefined);
        }
        await this.reply(channel, { t: 'error', code, message: err instanceof AgentError ? err.message : 'malformed message' });
      }
    });
  }

  private async reply(channel: string, message: unknown): Promise<void> {
    const c = this.channels.get(channel);
    if (!c?.session) return;
    this.send(channel, await c.session.seal(message));
  }

  private async handle(channel: string, c: Channel, bytes: Uint8Array): Promise<void> {
    if (!c.session) {
      const { session, epk } = await acceptPatientSession(this.o.agentKey.privateKey, channel, bytes);
      c.session = session;
      c.epk = epk;
      return;
    }
    const msg = (await c.session.open(bytes)) as Record<string, unknown>;
    if (msg.t === 'enrol') return this.onEnrol(channel, c, msg);
    if (msg.t === 'auth') return this.onAuth(channel, c, msg);
    if (!c.device || !c.thumb) throw new AgentError('ERR_PATIENT_UNKNOWN_DEVICE', 'the session is not authenticated');
    switch (msg.t) {
      case 'approve':
        return this.onApprove(channel, c.device, msg);
      case 'refuse':
        return this.onRefuse(channel, c.device, msg);
      case 'revoke':
        return this.onRevoke(channel, c.device, msg);
      case 'log':
        return this.reply(channel, { t: 'log', entries: await this.accessLog(c.device.patientId) });
      case 'records': {
        const copy = await this.recordsFor(c.device.patientId);
        if (!copy) return this.reply(channel, { t: 'error', code: 'ERR_NOT_FOUND', message: 'the hospital has not sent a copy of your records yet' });
        if (!fitsOneMessage(copy.bundle)) {
          return this.reply(channel, { t: 'error', code: 'ERR_PAYLOAD_TOO_LARGE', message: 'your records are too large to send in one message' });
        }
        return this.sendRecords(channel, c.thumb, this.hash(c.device.patientId), copy.bundle, copy.receivedAt);
      }
      default:
        throw new AgentError('ERR_BAD_REQUEST', 'unknown message type');
    }
  }

  private async checkAuth(channel: string, c: Channel, sign: unknown, sig: unknown): Promise<void> {
    try {
      await verifyJws(String(sig), sign, await sessionAuthPayload(channel, c.epk as EcPublicJwk));
    } catch {
      throw new AgentError('ERR_PATIENT_UNKNOWN_DEVICE', 'the session authentication does not verify');
    }
  }

  private async onEnrol(channel: string, c: Channel, msg: Record<string, unknown>): Promise<void> {
    const code = str(msg.code);
    const key = code ? sha256(code) : undefined;
    const record = key ? await this.o.store.codes.get(key) : undefined;
    const fail = (): AgentError => new AgentError('ERR_PATIENT_ENROLMENT', 'the enrolment code is unknown, used, expired or for another channel');
    if (!record || !key) throw fail();
    const a = Buffer.from(record.channel);
    const b = Buffer.from(channel);
    if (a.length !== b.length || !timingSafeEqual(a, b) || new Date(record.expiresAt).getTime() <= this.now().getTime()) throw fail();
    let sign: EcPublicJwk;
    try {
      sign = publicEcJwk(msg.sign);
    } catch {
      throw new AgentError('ERR_BAD_REQUEST', 'enrol needs the device signing key');
    }
    await this.checkAuth(channel, c, sign, msg.sig);
    // Single use: gone before the device is bound, so a second attempt with the same code finds nothing.
    await this.o.store.codes.del(key);
    const thumb = await jwkThumbprint(sign);
    const session = newChannel();
    const device: DeviceRecord = { patientId: record.patientId, sign, channel: session, enrolledAt: this.now().toISOString() };
    await this.o.store.devices.put(thumb, device);
    await this.o.store.channels.put(session, thumb);
    await this.o.ledger.append({ type: 'patient.enrolled', body: { patient: this.hash(record.patientId), device: thumb } });
    const credential = await issuePatientCredential(this.o.identity(), { use: 'session', channel: session, device: sign, now: this.now() });
    // The enrolment session is authenticated (the code and the device signature): it goes on as the device's session.
    c.device = device;
    c.thumb = thumb;
    this.o.log.info({ device: thumb }, 'patient device enrolled');
    await this.reply(channel, { t: 'enrolled', hospital: this.o.feed, device: thumb, credential });
  }

  private async onAuth(channel: string, c: Channel, msg: Record<string, unknown>): Promise<void> {
    const thumb = await this.o.store.channels.get(channel);
    const device = thumb ? await this.o.store.devices.get(thumb) : undefined;
    if (!device || !thumb) throw new AgentError('ERR_PATIENT_UNKNOWN_DEVICE', 'no device is enrolled on this channel');
    await this.checkAuth(channel, c, device.sign, msg.sig);
    c.device = device;
    c.thumb = thumb;
    const credential = await issuePatientCredential(this.o.identity(), { use: 'session', channel, device: device.sign, now: this.now() });
    const requests = (await PatientStore.values<ConsentRequestRecord>(this.o.store.requests)).filter(
      (r) => r.patientId === device.patientId && r.status === 'pending',
    );
    await this.reply(channel, {
      t: 'welcome',
      hospital: this.o.feed,
      credential,
      requests: requests.map((r) => this.requestView(r)),
      consents: await this.consentViews(device.patientId),
      records: await this.recordsNote(device.patientId),
    });
  }

  /** Whether a copy of the records is waiting (when the EHR sent it), for the app's welcome. */
  private async recordsNote(patientId: string): Promise<{ receivedAt: string; entries: number } | null> {
    const copy = await this.o.store.records.get(this.hash(patientId));
    return copy ? { receivedAt: copy.receivedAt, entries: copy.entries } : null;
  }

  /** What the app shows of a request, and signs: the terms, with the patient as keyed hash. */
  private requestView(r: ConsentRequestRecord): ConsentTerms & { createdAt: string; grantor: string; fhir: Record<string, unknown> } {
    const terms: ConsentTerms = {
      id: r.id,
      patientHash: this.hash(r.patientId),
      grantees: r.grantees,
      purposes: r.purposes,
      scope: r.scope,
      ...(r.categories ? { categories: r.categories } : {}),
      ...(r.labels ? { labels: r.labels } : {}),
      validFrom: r.validFrom,
      validUntil: r.validUntil,
    };
    // The app shows and signs this Consent (its dateTime set to the signing time); the agent rebuilds it to check.
    return { ...terms, createdAt: r.createdAt, grantor: this.o.feed, fhir: signedConsentFhir(terms, this.o.feed, r.createdAt) };
  }

  private signedAt(v: unknown): string {
    const at = str(v);
    const t = at ? new Date(at).getTime() : NaN;
    if (!at || Number.isNaN(t) || Math.abs(t - this.now().getTime()) > SIGNED_AT_SKEW_MS || new Date(t).toISOString() !== at) {
      throw new AgentError('ERR_BAD_REQUEST', 'signedAt must be the signing time (ISO 8601, within 5 minutes of the hospital clock)');
    }
    return at;
  }

  private async verifySignature(jws: unknown, device: DeviceRecord, fhir: Record<string, unknown>): Promise<string> {
    const signature = str(jws);
    try {
      if (!signature) throw new TypeError('no signature');
      await verifyConsentSignature(signature, device.sign, fhir);
    } catch {
      throw new AgentError('ERR_PATIENT_SIGNATURE', 'the signature does not verify with the enrolled device key');
    }
    return signature;
  }

  private async onApprove(channel: string, device: DeviceRecord, msg: Record<string, unknown>): Promise<void> {
    const id = str(msg.request);
    const request = id ? await this.o.store.requests.get(id) : undefined;
    if (!request || request.patientId !== device.patientId || request.status !== 'pending') throw new AgentError('ERR_NOT_FOUND', 'no such pending request');
    const signedAt = this.signedAt(msg.signedAt);
    const fhir = signedConsentFhir(this.requestView(request), this.o.feed, signedAt);
    const signature = await this.verifySignature(msg.jws, device, fhir);
    const consent = await this.o.consents.grant(
      {
        patientId: request.patientId,
        grantees: request.grantees,
        purposes: request.purposes,
        scope: request.scope,
        categories: request.categories,
        labels: request.labels,
        validFrom: request.validFrom,
        validUntil: request.validUntil,
      },
      { id: request.id, signature, signedAt, device: device.sign },
    );
    await this.o.store.requests.put(request.id, { ...request, status: 'approved' });
    this.o.log.info({ consentId: consent.id }, 'consent signed by the patient recorded');
    await this.reply(channel, { t: 'approved', consent: consent.id, consents: await this.consentViews(device.patientId) });
  }

  private async onRefuse(channel: string, device: DeviceRecord, msg: Record<string, unknown>): Promise<void> {
    const id = str(msg.request);
    const request = id ? await this.o.store.requests.get(id) : undefined;
    if (!request || request.patientId !== device.patientId || request.status !== 'pending') throw new AgentError('ERR_NOT_FOUND', 'no such pending request');
    await this.o.store.requests.put(request.id, { ...request, status: 'refused' });
    await this.reply(channel, { t: 'refused', request: request.id });
  }

  private async onRevoke(channel: string, device: DeviceRecord, msg: Record<string, unknown>): Promise<void> {
    const id = str(msg.consent);
    const consent = id ? await this.o.consents.get(id) : undefined;
    if (!consent || consent.patientHash !== this.hash(device.patientId)) throw new AgentError('ERR_NOT_FOUND', 'no such consent');
    const signedAt = this.signedAt(msg.signedAt);
    const fhir = signedConsentFhir(consent, this.o.feed, signedAt, signedAt);
    const signature = await this.verifySignature(msg.jws, device, fhir);
    await this.o.consents.revoke(consent.id, 'patient-request', { signature, signedAt });
    this.o.log.info({ consentId: consent.id }, 'consent revoked by the patient');
    await this.reply(channel, { t: 'revoked', consent: consent.id, consents: await this.consentViews(device.patientId) });
  }

  /** The patient's consents at this hospital, with how each is attested. */
  private async consentViews(patientId: string): Promise<unknown[]> {
    const hash = this.hash(patientId);
    const out: unknown[] = [];
    for (const c of await this.o.consents.list()) {
      if (c.patientHash !== hash) continue;
      const granted = await this.o.ledger.consentGranted(c.id, this.o.feed);
      const signed = (granted?.entry.body as { attestation?: string } | undefined)?.attestation === 'patient-signed';
      out.push({ ...c, attestation: signed ? 'patient-signed' : 'attested-by-hospital', fhir: signedConsentFhir(c, this.o.feed, c.grantedAt) });
    }
    return out;
  }

  /**
   * Every release of the patient's records from this hospital's ledger feed: to whom, when, under which consent, its
   * receipt, and where its proof is (`hie-ledger prove` builds a self-contained proof from feed and seq); and every copy
   * of their records sent to one of their devices (`kind: copy`, with the SHA-256 of the Bundle sent).
   */
  async accessLog(patientId: string): Promise<unknown[]> {
    const hash = this.hash(patientId);
    const out: unknown[] = [];
    for (const e of await this.o.ledger.byType('exchange.sent', this.o.feed)) {
      const body = e.entry.body as { exchange: string; to: string; consent: string; patient: string; purpose: string; contentType: string };
      if (body.patient !== hash) continue;
      const related = await this.o.ledger.byExchange(body.exchange);
      const receipt = related.find((r) => r.entry.type === 'receipt');
      const failed = related.find((r) => r.entry.type === 'exchange.failed');
      out.push({
        kind: 'release',
        exchange: body.exchange,
        to: body.to,
        at: e.entry.ts,
        consent: body.consent,
        purpose: body.purpose,
        contentType: body.contentType,
        receipt: receipt
          ? { disposition: (receipt.entry.body as { disposition: string }).disposition, at: receipt.entry.ts }
          : failed
            ? { disposition: 'failed', at: failed.entry.ts }
            : null,
        proof: { feed: e.entry.feed, seq: e.entry.seq, hash: e.hash },
      });
    }
    // The copies of their own records sent to the patient's devices are releases too, to the patient.
    for (const e of await this.o.ledger.byType('patient.records', this.o.feed)) {
      const body = e.entry.body as { patient: string; device: string; hash: string };
      if (body.patient !== hash) continue;
      out.push({
        kind: 'copy',
        to: 'patient',
        device: body.device,
        at: e.entry.ts,
        purpose: 'PATRQT',
        contentType: 'application/fhir+json',
        sha256: body.hash,
        proof: { feed: e.entry.feed, seq: e.entry.seq, hash: e.hash },
      });
    }
    return out.sort((a, b) => String((b as { at: string }).at).localeCompare(String((a as { at: string }).at)));
  }
}
