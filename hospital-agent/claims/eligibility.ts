/**
 * Coverage eligibility before a claim (FHIR R4 CoverageEligibilityRequest /
 * CoverageEligibilityResponse), carried as claims are: the hospital checks
 * the request (R4, identifier, insurance), the insurer role and the patient's
 * payment (HPAYMT) consent, logs `eligibility.requested` and sends it sealed;
 * a repeated request identifier returns the first request. The insurer files
 * it once (`eligibility.received`) and hands it to its claims system
 * (webhook, `GET /v1/eligibility?direction=incoming`), which answers through
 * `respond`: at once with a final outcome, or `queued` (pended) first and the
 * final one later. Each answer is a CoverageEligibilityResponse signed as a
 * ClaimResponse is, logged (`eligibility.responded`) by the insurer and, once
 * verified, by the hospital. The ledger holds hashes and parties only.
 */
import { createHash, randomUUID } from 'node:crypto';
import { z } from 'zod';
import { HOSPITAL_ID_PATTERN, jcs, type VerifiedDirectory } from '../../certs/index.ts';
import type { AppendInput } from '../../ledger/index.ts';
import { patientHash } from '../consent/patient.ts';
import { openSignedMessage, sealSignedMessage, type LocalKeys, type SenderLookup } from '../crypto/index.ts';
import { PeerKeyUnavailableError, type PeerDirectory } from '../engine/peers.ts';
import type { EngineLogger } from '../engine/index.ts';
import type { WireModule } from '../engine/dispatch.ts';
import { AgentError, type FhirIssue } from '../errors.ts';
import { validateR4 } from '../fhir/index.ts';
import type { ConsentService } from '../services/consents.ts';
import { CLAIM_ID_SYSTEM, coverageIssues, jcsHash, MAX_DISPOSITION_CHARS, MEMBER_SYSTEM, type ClaimOutcome } from './model.ts';
import { ClaimSignatureError, openFromInsurer, sealForHospital, signClaimResponse, verifyInsurerSigned, type VerifiedClaimResponse } from './signing.ts';
import type { EligibilityRecord, EligibilityStore } from './eligibility-store.ts';
import { ELIGIBILITY_WIRE_KINDS, eligibilityWireSchema, type EligibilityWireMessage } from './wire.ts';
import { CLAIM_PURPOSE, MAX_CLAIM_AGE_MS } from './service.ts';

/** What a consent must cover for an eligibility request: the resource types it carries. */
export const ELIGIBILITY_SCOPE = ['CoverageEligibilityRequest', 'Coverage'];
/** `typ` of a signed CoverageEligibilityResponse. */
export const ELIGIBILITY_RESPONSE_JWS_TYPE = 'hie-coverageeligibilityresponse+json';
/** What an insurer's claims system may answer: `queued` pends the request (once, before a final answer). */
export const ELIGIBILITY_OUTCOMES = ['queued', 'complete', 'partial', 'error'] as const;

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

const requestSchema = z.strictObject({
  v: z.literal(1),
  id: z.uuid(),
  from: z.string().regex(HOSPITAL_ID_PATTERN),
  to: z.string().regex(HOSPITAL_ID_PATTERN),
  request: z.record(z.string(), z.unknown()),
  coverage: z.record(z.string(), z.unknown()),
  created: z.iso.datetime(),
});

/** A CoverageEligibilityRequest as the federation takes it. */
export interface CheckedEligibility {
  request: Json;
  coverage: Json;
  identifier: string;
  hash: string;
}

/**
 * Checks a CoverageEligibilityRequest and its Coverage: both valid FHIR R4
 * (422 ERR_FHIR_INVALID), the request with an identifier and an insurance
 * entry (422 ERR_CLAIM_INVALID).
 */
export function checkEligibilityRequest(request: unknown, coverage: unknown): CheckedEligibility {
  if (!isObject(request) || request['resourceType'] !== 'CoverageEligibilityRequest')
    throw new AgentError('ERR_INVALID_FHIR', 'request must be a FHIR CoverageEligibilityRequest resource');
  if (!isObject(coverage) || coverage['resourceType'] !== 'Coverage') throw new AgentError('ERR_INVALID_FHIR', 'coverage must be a FHIR Coverage resource');
  const issues = [...validateR4(request), ...coverageIssues(coverage)];
  if (issues.length > 0) throw new AgentError(issues[0]!.code, `${issues.length} problem(s) in the CoverageEligibilityRequest or its Coverage`, { issues });
  const invalid = (issue: FhirIssue): AgentError => new AgentError('ERR_CLAIM_INVALID', issue.message, { issues: [issue] });
  const ids = request['identifier'];
  const first = Array.isArray(ids) && isObject(ids[0]) ? ids[0] : undefined;
  const system = typeof first?.['system'] === 'string' ? first['system'] : '';
  const value = typeof first?.['value'] === 'string' ? first['value'] : '';
  if (!system || !value || system.length > 256 || value.length > 128)
    throw invalid({
      code: 'ERR_CLAIM_INVALID',
      expression: 'CoverageEligibilityRequest.identifier[0]',
      message: 'the request needs an identifier with a system and a value',
    });
  if (!Array.isArray(request['insurance']) || request['insurance'].length === 0)
    throw invalid({
      code: 'ERR_CLAIM_INVALID',
      expression: 'CoverageEligibilityRequest.insurance',
      message: 'the request needs an insurance entry naming its Coverage',
    });
  return { request, coverage, identifier: `${system}|${value}`, hash: jcsHash(request) };
}

/** What an insurer says about an eligibility request. */
export interface EligibilityAnswer {
  outcome: ClaimOutcome;
  /** Whether the coverage is in force (final outcomes other than error). */
  inforce?: boolean | undefined;
  disposition?: string | undefined;
}

/** The FHIR R4 CoverageEligibilityResponse an insurer signs. */
export function eligibilityResponse(input: { id: string; request: Json; hospital: string; insurer: string; created: Date; answer: EligibilityAnswer }): Json {
  const { request, answer: a } = input;
  const ids = Array.isArray(request['identifier']) ? (request['identifier'] as Json[]) : [];
  const insurance = Array.isArray(request['insurance']) ? (request['insurance'] as Json[]) : [];
  const coverageRef = isObject(insurance[0]) ? insurance[0]['coverage'] : undefined;
  const final = a.outcome !== 'queued' && a.outcome !== 'error';
  return {
    resourceType: 'CoverageEligibilityResponse',
    id: input.id,
    identifier: [{ system: CLAIM_ID_SYSTEM, value: input.id }],
    status: 'active',
    purpose: request['purpose'],
    patient: request['patient'],
    created: input.created.toISOString(),
    requestor: { identifier: { system: MEMBER_SYSTEM, value: input.hospital } },
    request: { identifier: ids[0] ?? { system: CLAIM_ID_SYSTEM, value: input.id } },
    outcome: a.outcome,
    ...(a.disposition ? { disposition: a.disposition } : {}),
    insurer: { identifier: { system: MEMBER_SYSTEM, value: input.insurer } },
    ...(final && isObject(coverageRef) ? { insurance: [{ coverage: coverageRef, inforce: a.inforce ?? true }] } : {}),
  };
}

/** Verifies a signed CoverageEligibilityResponse of `insurer` (key bundle from its CA-issued certificate; see verifyClaimResponse). */
export function verifyEligibilityResponse(jws: string, insurer: string, resolveSigner: SenderLookup): Promise<VerifiedClaimResponse> {
  return verifyInsurerSigned(jws, insurer, resolveSigner, ELIGIBILITY_RESPONSE_JWS_TYPE, 'CoverageEligibilityResponse');
}

/** What a hospital sends. */
export interface EligibilitySubmission {
  insurer: string;
  patientId: string;
  consentId?: string | undefined;
  request: unknown;
  coverage: unknown;
}

/** See the module comment. */
export class EligibilityService {
  constructor(
    private readonly o: {
      self: string;
      secret: Buffer;
      identifierSystem?: string | undefined;
      store: EligibilityStore;
      consents: ConsentService;
      peers: PeerDirectory;
      keys: () => LocalKeys;
      directory: () => VerifiedDirectory | undefined;
      ledger: { append(input: AppendInput): Promise<{ hash: string }> };
      send: (to: string, message: EligibilityWireMessage) => void;
      logger: EngineLogger;
      /** A request for this insurer was filed: hand it to the claims system. */
      onIncoming?: (request: EligibilityRecord) => void;
      now?: () => Date;
    },
  ) {}

  private now(): Date {
    return this.o.now?.() ?? new Date();
  }

  /** The dispatcher's view of this service. */
  wireModule(): WireModule {
    return { kinds: ELIGIBILITY_WIRE_KINDS, handle: (from, message) => this.onMessage(from, message) };
  }

  private assertInsurer(id: string): void {
    const d = this.o.directory();
    const m = d?.members.get(id);
    if (!d || !m) throw new AgentError('ERR_MEMBER_NOT_INSURER', `'${id}' is not listed as an insurer in the member directory`);
    if (m.status !== 'active') throw new AgentError(m.status === 'revoked' ? 'ERR_MEMBER_REVOKED' : 'ERR_MEMBER_SUSPENDED', `'${id}' is ${m.status}`);
    if (m.role !== 'insurer') throw new AgentError('ERR_MEMBER_NOT_INSURER', `'${id}' is a member with role '${m.role}', not an insurer`);
  }

  /** Sends a request to an insurer; `created` false when one of the same identifier was sent to it before (that one is returned). */
  async request(input: EligibilitySubmission): Promise<{ record: EligibilityRecord; created: boolean }> {
    if (input.insurer === this.o.self) throw new AgentError('ERR_BAD_REQUEST', 'a member cannot ask itself about eligibility');
    this.assertInsurer(input.insurer);
    const checked = checkEligibilityRequest(input.request, input.coverage);
    const first = await this.o.store.byRequestIdentifier('outgoing', input.insurer, checked.identifier);
    if (first) return { record: first, created: false };
    const patient = patientHash(this.o.secret, input.patientId, this.o.identifierSystem);
    const ask = { patientHash: patient, recipient: input.insurer, purpose: CLAIM_PURPOSE, scope: ELIGIBILITY_SCOPE, at: this.now() } as const;
    const consent = input.consentId
      ? await this.o.consents.check(input.consentId, ask)
      : await this.o.consents.findCovering(ask).then((f) => {
          if ('refusal' in f) throw f.refusal;
          return f.consent;
        });
    let bundle;
    try {
      bundle = await this.o.peers.encryptionBundle(input.insurer);
    } catch (err) {
      if (err instanceof PeerKeyUnavailableError)
        throw new AgentError('ERR_RELAY_UNAVAILABLE', `cannot reach '${input.insurer}' to deliver the request; try again later`);
      throw err;
    }
    const now = this.now().toISOString();
    const id = randomUUID();
    const keys = this.o.keys();
    const payload = { v: 1 as const, id, from: this.o.self, to: input.insurer, request: checked.request, coverage: checked.coverage, created: now };
    const jwe = await sealSignedMessage(
      jcs(payload),
      { key: keys.signing.privateKey, kid: keys.signingKid },
      { key: bundle.encryptionKey, kid: bundle.encryptionKid },
    );
    const filed = await this.o.store.create({
      id,
      direction: 'outgoing',
      peer: input.insurer,
      identifier: checked.identifier,
      status: 'sent',
      hash: checked.hash,
      createdAt: now,
      updatedAt: now,
      consentId: consent.id,
      patientHash: patient,
      request: checked.request,
      coverage: checked.coverage,
      jwe,
      responses: [],
    });
    if (!filed.created) return filed;
    await this.o.ledger.append({
      type: 'eligibility.requested',
      body: { request: id, insurer: input.insurer, consent: consent.id, patient, hash: checked.hash },
    });
    this.o.send(input.insurer, { t: 'eligibility.request', id, jwe });
    this.o.logger.info({ eligibility: id, insurer: input.insurer }, 'eligibility request sent');
    return filed;
  }

  /** Sends again what is unanswered and asks after pended requests (after a restart or a lost link). */
  async resume(): Promise<number> {
    let n = 0;
    for (const r of await this.o.store.list('outgoing')) {
      if (r.status === 'sent' && r.jwe) this.o.send(r.peer, { t: 'eligibility.request', id: r.id, jwe: r.jwe });
      else if (r.status === 'queued') this.o.send(r.peer, { t: 'eligibility.get', id: r.id });
      else continue;
      n += 1;
    }
    return n;
  }

  /** Handles an eligibility message from `from` (validated here). */
  async onMessage(from: string, value: unknown): Promise<void> {
    const parsed = eligibilityWireSchema.safeParse(value);
    if (!parsed.success) {
      this.o.logger.warn({ from, problem: parsed.error.issues[0]?.path.join('.') || 'shape' }, 'dropped a malformed eligibility message');
      return;
    }
    const m = parsed.data;
    if (m.t === 'eligibility.request') return this.onRequest(from, m);
    if (m.t === 'eligibility.response') return this.onResponse(from, m);
    const r = await this.o.store.get(m.id);
    if (r?.direction === 'incoming' && r.peer === from) await this.pushLatest(r);
  }

  /** Insurer: files a hospital's request once and hands it to the claims system; a copy is answered with the latest response. */
  private async onRequest(from: string, m: Extract<EligibilityWireMessage, { t: 'eligibility.request' }>): Promise<void> {
    const known = await this.o.store.get(m.id);
    if (known) {
      if (known.direction === 'incoming' && known.peer === from) await this.pushLatest(known);
      return;
    }
    let payload: z.infer<typeof requestSchema>;
    let checked;
    try {
      const keys = this.o.keys();
      const lookup = this.o.peers.signerLookup();
      const bytes = await openSignedMessage(m.jwe, keys.encryption.privateKey, async (kid) => (await lookup(from, kid, this.now()))?.signingKey);
      payload = requestSchema.parse(JSON.parse(Buffer.from(bytes).toString('utf8')));
      if (payload.from !== from || payload.to !== this.o.self || payload.id !== m.id)
        throw new Error('request is not addressed from the sender to this member');
      if (Math.abs(this.now().getTime() - Date.parse(payload.created)) > MAX_CLAIM_AGE_MS) throw new Error('request is too old');
      this.assertInsurer(this.o.self);
      checked = checkEligibilityRequest(payload.request, payload.coverage);
    } catch (err) {
      this.o.logger.warn({ from, eligibility: m.id, code: (err as AgentError).code, err: { message: (err as Error).message } }, 'eligibility request refused');
      return;
    }
    const now = this.now().toISOString();
    const filed = await this.o.store.create({
      id: payload.id,
      direction: 'incoming',
      peer: from,
      identifier: checked.identifier,
      status: 'sent',
      hash: checked.hash,
      createdAt: now,
      updatedAt: now,
      request: checked.request,
      coverage: checked.coverage,
      responses: [],
    });
    if (!filed.created) {
      await this.pushLatest(filed.record);
      return;
    }
    await this.o.ledger.append({ type: 'eligibility.received', body: { request: payload.id, hospital: from, hash: checked.hash } });
    this.o.logger.info({ eligibility: payload.id, hospital: from }, 'eligibility request received; handed to the claims system');
    this.o.onIncoming?.(filed.record);
  }

  /**
   * Insurer: the claims system's answer, signed, logged and pushed to the
   * hospital: a final outcome at once, or `queued` (pended) and a final one
   * later. ERR_NOT_FOUND for no such incoming request, ERR_CLAIM_STATE for one
   * already answered finally (or pended twice).
   */
  async respond(id: string, input: EligibilityAnswer): Promise<EligibilityRecord> {
    const r = await this.o.store.get(id);
    if (!r || r.direction !== 'incoming') throw new AgentError('ERR_NOT_FOUND', 'no such incoming eligibility request');
    if (input.disposition && input.disposition.length > MAX_DISPOSITION_CHARS) throw new AgentError('ERR_BAD_REQUEST', 'disposition is too long');
    if (input.outcome === 'error' && input.inforce !== undefined) throw new AgentError('ERR_BAD_REQUEST', 'an error outcome says nothing of the coverage');
    const keys = this.o.keys();
    const response = eligibilityResponse({ id: r.id, request: r.request, hospital: r.peer, insurer: this.o.self, created: this.now(), answer: input });
    const jws = await signClaimResponse(response, { key: keys.signing.privateKey, kid: keys.signingKid }, ELIGIBILITY_RESPONSE_JWS_TYPE);
    let state: string | undefined;
    const next = await this.o.store.update(r.id, (cur) => {
      const open = cur.status === 'sent' || (cur.status === 'queued' && input.outcome !== 'queued');
      if (!open) return ((state = cur.status), undefined);
      return { ...cur, status: input.outcome, responses: [...cur.responses, jws], updatedAt: this.now().toISOString() };
    });
    if (!next) throw new AgentError('ERR_CLAIM_STATE', `the eligibility request is already answered (${state ?? 'unknown'})`);
    await this.log(next, this.o.self, input.outcome, jws);
    await this.pushLatest(next);
    this.o.logger.info({ eligibility: id, hospital: r.peer, outcome: input.outcome }, 'eligibility answered');
    return next;
  }

  private async log(r: EligibilityRecord, insurer: string, outcome: ClaimOutcome, jws: string): Promise<void> {
    const hospital = r.direction === 'outgoing' ? this.o.self : r.peer;
    const hash = createHash('sha256').update(jws).digest('base64url');
    await this.o.ledger.append({ type: 'eligibility.responded', body: { request: r.id, hospital, insurer, outcome, hash } });
  }

  private async pushLatest(r: EligibilityRecord): Promise<void> {
    const jws = r.responses.at(-1);
    if (!jws) return;
    let bundle;
    try {
      bundle = await this.o.peers.encryptionBundle(r.peer);
    } catch {
      this.o.logger.warn({ eligibility: r.id, hospital: r.peer }, 'cannot reach the hospital for an eligibility response; it asks again');
      return;
    }
    this.o.send(r.peer, { t: 'eligibility.response', id: r.id, jwe: await sealForHospital(jws, { key: bundle.encryptionKey, kid: bundle.encryptionKid }) });
  }

  /** Hospital: verifies an insurer's signed response, files and logs it (once each; a final answer stays final). */
  private async onResponse(from: string, m: Extract<EligibilityWireMessage, { t: 'eligibility.response' }>): Promise<void> {
    const r = await this.o.store.get(m.id);
    if (!r || r.direction !== 'outgoing' || r.peer !== from) return;
    let verified;
    let jws: string;
    try {
      jws = await openFromInsurer(m.jwe, this.o.keys().encryption.privateKey);
      verified = await verifyEligibilityResponse(jws, from, this.o.peers.signerLookup());
    } catch (err) {
      if (!(err instanceof ClaimSignatureError)) throw err;
      this.o.logger.warn({ from, eligibility: m.id, err: { message: err.message } }, 'eligibility response refused');
      return;
    }
    const res = verified.response;
    const named = (res['identifier'] as Array<{ value?: unknown }> | undefined)?.[0]?.value;
    const outcome = res['outcome'] as ClaimOutcome;
    if (named !== r.id || !(ELIGIBILITY_OUTCOMES as readonly string[]).includes(outcome)) {
      this.o.logger.warn({ from, eligibility: m.id }, 'eligibility response refused: it names another request or no outcome');
      return;
    }
    const next = await this.o.store.update(r.id, (cur) => {
      if (cur.responses.includes(jws)) return undefined;
      const final = cur.status !== 'sent' && cur.status !== 'queued';
      const { jwe: _sent, ...rest } = cur;
      return { ...rest, status: final ? cur.status : outcome, responses: [...cur.responses, jws], updatedAt: this.now().toISOString() };
    });
    if (!next) return;
    await this.log(next, from, outcome, jws);
    this.o.logger.info({ eligibility: r.id, insurer: from, outcome }, 'eligibility response verified');
  }
}
