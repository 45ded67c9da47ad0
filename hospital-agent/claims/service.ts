import { createHash, randomUUID } from 'node:crypto';
import { z } from 'zod';
import { HOSPITAL_ID_PATTERN, jcs, type VerifiedDirectory } from '../../certs/index.ts';
import type { AppendInput } from '../../ledger/index.ts';
import { patientHash } from '../consent/patient.ts';
import { openSignedMessage, sealSignedMessage, type LocalKeys } from '../crypto/index.ts';
import { PeerKeyUnavailableError, type PeerDirectory } from '../engine/peers.ts';
import type { EngineLogger } from '../engine/index.ts';
import type { WireModule } from '../engine/dispatch.ts';
import { AgentError } from '../errors.ts';
import type { ConsentService } from '../services/consents.ts';
import { checkClaim, claimResponse, FINAL_OUTCOMES, MAX_DISPOSITION_CHARS, toMinorUnits, type Adjudication, type ClaimOutcome } from './model.ts';
import { ClaimSignatureError, openFromInsurer, sealForHospital, signClaimResponse, verifyClaimResponse } from './signing.ts';
import type { ClaimRecord, ClaimStore } from './store.ts';
import { CLAIM_WIRE_KINDS, claimWireSchema, type ClaimWireMessage } from './wire.ts';

/** The purpose of use a claim is released under (HL7 v3 PurposeOfUse: healthcare payment). */
export const CLAIM_PURPOSE = 'HPAYMT';
/** What a consent must cover for a claim: the resource types it carries. */
export const CLAIM_SCOPE = ['Claim', 'Coverage'];
/** How old a submitted claim may be when it first arrives (later copies of a filed claim are always answered). */
export const MAX_CLAIM_AGE_MS = 24 * 3600_000;

const submissionSchema = z.strictObject({
  v: z.literal(1),
  id: z.uuid(),
  from: z.string().regex(HOSPITAL_ID_PATTERN),
  to: z.string().regex(HOSPITAL_ID_PATTERN),
  claim: z.record(z.string(), z.unknown()),
  coverage: z.record(z.string(), z.unknown()),
  created: z.iso.datetime(),
});

/** What a hospital submits. */
export interface ClaimSubmission {
  insurer: string;
  patientId: string;
  /** The consent it is released under; without it, any of the patient's consents that covers it. */
  consentId?: string | undefined;
  claim: unknown;
  coverage: unknown;
}

/**
 * Insurance claims between hospitals and insurer members. The hospital
 * checks the Claim (R4, identifier, total, items, insurance), that the
 * recipient is an insurer of the member directory and that the patient's
 * consent covers payment (HPAYMT) for it, logs `claim.submitted` and sends it
 * sealed; a repeated Claim identifier returns the first claim. The insurer
 * files it once (`claim.received`), hands it to its claims system (webhook
 * and `GET /v1/claims?direction=incoming`) and answers with a signed
 * ClaimResponse, `queued`; the claims system's adjudication (`respond`) is
 * signed, logged (`claim.responded`, and the benefit as a `payment.charged`
 * of kind `claim` from insurer to hospital, which the settlement statement
 * shows) and pushed to the hospital, which verifies and logs it in turn.
 */
export class ClaimService {
  constructor(
    private readonly o: {
      self: string;
      secret: Buffer;
      identifierSystem?: string | undefined;
      store: ClaimStore;
      consents: ConsentService;
      peers: PeerDirectory;
      keys: () => LocalKeys;
      directory: () => VerifiedDirectory | undefined;
      ledger: { append(input: AppendInput): Promise<{ hash: string }> };
      send: (to: string, message: ClaimWireMessage) => void;
      logger: EngineLogger;
      /** A claim for this insurer was filed: hand it to the claims system. */
      onIncoming?: (claim: ClaimRecord) => void;
      now?: () => Date;
    },
  ) {}

  private now(): Date {
    return this.o.now?.() ?? new Date();
  }

  /** The dispatcher's view of this service. */
  wireModule(): WireModule {
    return { kinds: CLAIM_WIRE_KINDS, handle: (from, message) => this.onMessage(from, message) };
  }

  /** Refuses a recipient that is not an active insurer of the member directory (422). */
  private assertInsurer(id: string): void {
    const d = this.o.directory();
    const m = d?.members.get(id);
    if (!d || !m) throw new AgentError('ERR_MEMBER_NOT_INSURER', `'${id}' is not listed as an insurer in the member directory`);
    if (m.status !== 'active') throw new AgentError(m.status === 'revoked' ? 'ERR_MEMBER_REVOKED' : 'ERR_MEMBER_SUSPENDED', `'${id}' is ${m.status}`);
    if (m.role !== 'insurer') throw new AgentError('ERR_MEMBER_NOT_INSURER', `'${id}' is a member with role '${m.role}', not an insurer`);
  }

  /** Submits a claim to an insurer; `created` false when a claim of the same identifier was submitted to it before (that one is returned). */
  async submit(input: ClaimSubmission): Promise<{ record: ClaimRecord; created: boolean }> {
    if (input.insurer === this.o.self) throw new AgentError('ERR_BAD_REQUEST', 'a member cannot submit a claim to itself');
    this.assertInsurer(input.insurer);
    const checked = checkClaim(input.claim, input.coverage);
    const first = await this.o.store.byClaimIdentifier('outgoing', input.insurer, checked.identifier);
    if (first) return { record: first, created: false };
    const patient = patientHash(this.o.secret, input.patientId, this.o.identifierSystem);
    const request = { patientHash: patient, recipient: input.insurer, purpose: CLAIM_PURPOSE, scope: CLAIM_SCOPE, at: this.now() } as const;
    const consent = input.consentId
      ? await this.o.consents.check(input.consentId, request)
      : await this.o.consents.findCovering(request).then((f) => {
          if ('refusal' in f) throw f.refusal;
          return f.consent;
        });
    let bundle;
    try {
      bundle = await this.o.peers.encryptionBundle(input.insurer);
    } catch (err) {
      if (err instanceof PeerKeyUnavailableError)
        throw new AgentError('ERR_RELAY_UNAVAILABLE', `cannot reach '${input.insurer}' to deliver the claim; try again later`);
      throw err;
    }
    const now = this.now().toISOString();
    const id = randomUUID();
    const keys = this.o.keys();
    const payload = { v: 1 as const, id, from: this.o.self, to: input.insurer, claim: checked.claim, coverage: checked.coverage, created: now };
    const jwe = await sealSignedMessage(
      jcs(payload),
      { key: keys.signing.privateKey, kid: keys.signingKid },
      { key: bundle.encryptionKey, kid: bundle.encryptionKid },
    );
    const record: ClaimRecord = {
      id,
      direction: 'outgoing',
      peer: input.insurer,
      identifier: checked.identifier,
      status: 'sent',
      amount: checked.amount,
      currency: checked.currency,
      hash: checked.hash,
      createdAt: now,
      updatedAt: now,
      consentId: consent.id,
      patientHash: patient,
      claim: checked.claim,
      coverage: checked.coverage,
      jwe,
      responses: [],
    };
    const filed = await this.o.store.create(record);
    if (!filed.created) return filed;
    await this.o.ledger.append({
      type: 'claim.submitted',
      body: { claim: id, insurer: input.insurer, consent: consent.id, patient, hash: checked.hash, amount: checked.amount, currency: checked.currency },
    });
    this.o.send(input.insurer, { t: 'claim.submit', id, jwe });
    this.o.logger.info({ claim: id, insurer: input.insurer }, 'claim submitted');
    return filed;
  }

  /** Sends again what is still unanswered: unanswered claims, and asks after pended ones (after a restart or a lost link). */
  async resume(): Promise<number> {
    let n = 0;
    for (const r of await this.o.store.list('outgoing')) {
      if (r.status === 'sent' && r.jwe) this.o.send(r.peer, { t: 'claim.submit', id: r.id, jwe: r.jwe });
      else if (r.status === 'queued') this.o.send(r.peer, { t: 'claim.get', id: r.id });
      else continue;
      n += 1;
    }
    return n;
  }

  /** Handles a claim message from `from` (validated here: the dispatcher passes it unchecked). */
  async onMessage(from: string, value: unknown): Promise<void> {
    const parsed = claimWireSchema.safeParse(value);
    if (!parsed.success) {
      this.o.logger.warn({ from, problem: parsed.error.issues[0]?.path.join('.') || 'shape' }, 'dropped a malformed claim message');
      return;
    }
    const m = parsed.data;
    if (m.t === 'claim.submit') return this.onSubmit(from, m);
    if (m.t === 'claim.response') return this.onResponse(from, m);
    return this.onGet(from, m.id);
  }

  /** Insurer: files a hospital's claim once, hands it to the claims system and answers `queued`; a copy is answered with the latest response. */
  private async onSubmit(from: string, m: Extract<ClaimWireMessage, { t: 'claim.submit' }>): Promise<void> {
    const known = await this.o.store.get(m.id);
    if (known) {
      if (known.direction === 'incoming' && known.peer === from) await this.pushLatest(known);
      return;
    }
    let payload: z.infer<typeof submissionSchema>;
    let checked;
    try {
      const keys = this.o.keys();
      const lookup = this.o.peers.signerLookup();
      const bytes = await openSignedMessage(m.jwe, keys.encryption.privateKey, async (kid) => (await lookup(from, kid, this.now()))?.signingKey);
      payload = submissionSchema.parse(JSON.parse(Buffer.from(bytes).toString('utf8')));
      if (payload.from !== from || payload.to !== this.o.self || payload.id !== m.id) throw new Error('claim is not addressed from the sender to this member');
      if (Math.abs(this.now().getTime() - Date.parse(payload.created)) > MAX_CLAIM_AGE_MS) throw new Error('claim is too old');
      this.assertInsurer(this.o.self);
      checked = checkClaim(payload.claim, payload.coverage);
    } catch (err) {
      this.o.logger.warn({ from, claim: m.id, code: (err as AgentError).code, err: { message: (err as Error).message } }, 'claim refused');
      return;
    }
    const now = this.now().toISOString();
    const filed = await this.o.store.create({
      id: payload.id,
      direction: 'incoming',
      peer: from,
      identifier: checked.identifier,
      status: 'queued',
      amount: checked.amount,
      currency: checked.currency,
      hash: checked.hash,
      createdAt: now,
      updatedAt: now,
      claim: checked.claim,
      coverage: checked.coverage,
      responses: [],
    });
    if (!filed.created) {
      // The same Claim identifier under a new claim id (the hospital lost its record): answered with the first claim's response.
      await this.pushLatest(filed.record);
      return;
    }
    // Appended before the queued response's entry (the ledger keeps call order) and committed with it.
    const received = this.o.ledger.append({
      type: 'claim.received',
      body: { claim: payload.id, hospital: from, hash: checked.hash, amount: checked.amount, currency: checked.currency },
    });
    await Promise.all([received, this.answer(filed.record, { outcome: 'queued', paid: 0, currency: checked.currency })]);
    this.o.logger.info({ claim: payload.id, hospital: from }, 'claim received; handed to the claims system');
    this.o.onIncoming?.(filed.record);
  }

  /**
   * Insurer: the claims system's adjudication of a pended claim (complete,
   * partial or error), signed, logged with its payment and pushed to the
   * hospital. Throws ERR_NOT_FOUND for no such incoming claim and
   * ERR_CLAIM_STATE for one already adjudicated.
   */
  async respond(
    id: string,
    input: { outcome: (typeof FINAL_OUTCOMES)[number]; paid?: number | undefined; disposition?: string | undefined },
  ): Promise<ClaimRecord> {
    const r = await this.o.store.get(id);
    if (!r || r.direction !== 'incoming') throw new AgentError('ERR_NOT_FOUND', 'no such incoming claim');
    if (r.status !== 'queued') throw new AgentError('ERR_CLAIM_STATE', `the claim is already adjudicated (${r.status})`);
    const paid = input.outcome === 'error' ? 0 : (input.paid ?? (input.outcome === 'complete' ? r.amount : undefined));
    if (paid === undefined) throw new AgentError('ERR_BAD_REQUEST', 'a partial adjudication names the amount paid (paid, minor units)');
    if (input.outcome === 'error' && input.paid) throw new AgentError('ERR_BAD_REQUEST', 'an error outcome pays nothing');
    if (paid > r.amount) throw new AgentError('ERR_BAD_REQUEST', 'paid exceeds the amount claimed');
    if (input.disposition && input.disposition.length > MAX_DISPOSITION_CHARS) throw new AgentError('ERR_BAD_REQUEST', 'disposition is too long');
    const done = await this.answer(r, { outcome: input.outcome, paid, currency: r.currency, disposition: input.disposition });
    this.o.logger.info({ claim: id, hospital: r.peer, outcome: input.outcome }, 'claim adjudicated');
    return done;
  }

  /** Signs a ClaimResponse for an incoming claim, stores and logs it, and pushes it to the hospital (at most once per state). */
  private async answer(r: ClaimRecord, a: Adjudication): Promise<ClaimRecord> {
    const keys = this.o.keys();
    const response = claimResponse({ claimId: r.id, claim: r.claim, hospital: r.peer, insurer: this.o.self, created: this.now(), adjudication: a });
    const jws = await signClaimResponse(response, { key: keys.signing.privateKey, kid: keys.signingKid });
    let raced = false;
    const next = await this.o.store.update(r.id, (cur) => {
      // Two adjudications at once: the first wins.
      if (a.outcome !== 'queued' && cur.status !== 'queued') return ((raced = true), undefined);
      if (a.outcome === 'queued' && cur.responses.length > 0) return ((raced = true), undefined);
      return { ...cur, status: a.outcome, paid: a.paid, responses: [...cur.responses, jws], updatedAt: this.now().toISOString() };
    });
    if (raced || !next) throw new AgentError('ERR_CLAIM_STATE', 'the claim was adjudicated meanwhile');
    await this.logResponse(next, this.o.self, a, jws);
    await this.pushLatest(next);
    return next;
  }

  /** Logs a verified or signed response, and its benefit as a charge the settlement statement counts (one id for both parties). */
  private async logResponse(r: ClaimRecord, insurer: string, a: { outcome: ClaimOutcome; paid: number; currency: string }, jws: string): Promise<void> {
    const hospital = r.direction === 'outgoing' ? this.o.self : r.peer;
    const hash = createHash('sha256').update(jws).digest('base64url');
    // Issued together (the ledger keeps call order): one group commit for both.
    const logged = [
      this.o.ledger.append({
        type: 'claim.responded',
        body: { claim: r.id, hospital, insurer, outcome: a.outcome, hash, amount: a.paid, currency: a.currency },
      }),
    ];
    if ((a.outcome === 'complete' || a.outcome === 'partial') && a.paid > 0) {
      logged.push(
        this.o.ledger.append({
          type: 'payment.charged',
          body: { charge: claimChargeId(r.id), exchange: r.id, kind: 'claim', payer: insurer, payee: hospital, amount: a.paid, currency: a.currency },
        }),
      );
    }
    await Promise.all(logged);
  }

  /** Insurer: sends the latest response of an incoming claim to its hospital. */
  private async pushLatest(r: ClaimRecord): Promise<void> {
    const jws = r.responses.at(-1);
    if (!jws) return;
    let bundle;
    try {
      bundle = await this.o.peers.encryptionBundle(r.peer);
    } catch {
      this.o.logger.warn({ claim: r.id, hospital: r.peer }, 'cannot reach the hospital for a claim response; it asks again');
      return;
    }
    this.o.send(r.peer, { t: 'claim.response', id: r.id, jwe: await sealForHospital(jws, { key: bundle.encryptionKey, kid: bundle.encryptionKid }) });
  }

  private async onGet(from: string, id: string): Promise<void> {
    const r = await this.o.store.get(id);
    if (r?.direction === 'incoming' && r.peer === from) await this.pushLatest(r);
  }

  /** Hospital: verifies an insurer's signed ClaimResponse, files and logs it (once each; a pended claim's final response replaces `queued`). */
  private async onResponse(from: string, m: Extract<ClaimWireMessage, { t: 'claim.response' }>): Promise<void> {
    const r = await this.o.store.get(m.id);
    if (!r || r.direction !== 'outgoing' || r.peer !== from) return;
    let verified;
    let jws: string;
    try {
      jws = await openFromInsurer(m.jwe, this.o.keys().encryption.privateKey);
      verified = await verifyClaimResponse(jws, from, this.o.peers.signerLookup());
    } catch (err) {
      if (!(err instanceof ClaimSignatureError)) throw err;
      this.o.logger.warn({ from, claim: m.id, err: { message: err.message } }, 'claim response refused');
      return;
    }
    const res = verified.response;
    const named = (res['identifier'] as Array<{ value?: unknown }> | undefined)?.[0]?.value;
    const outcome = res['outcome'] as ClaimOutcome;
    if (named !== r.id || !['queued', ...FINAL_OUTCOMES].includes(outcome)) {
      this.o.logger.warn({ from, claim: m.id }, 'claim response refused: it names another claim or no outcome');
      return;
    }
    const money = (res['payment'] as { amount?: { value?: unknown; currency?: unknown } } | undefined)?.amount;
    const paid = typeof money?.value === 'number' && money.currency === r.currency ? (toMinorUnits(money.value, r.currency) ?? 0) : 0;
    const next = await this.o.store.update(r.id, (cur) => {
      if (cur.responses.includes(jws)) return undefined;
      // A final answer stays final; a late `queued` is kept only as evidence.
      const final = cur.status !== 'sent' && cur.status !== 'queued';
      const { jwe: _sent, ...rest } = cur;
      return {
        ...rest,
        status: final ? cur.status : outcome,
        paid: final ? (cur.paid ?? 0) : paid,
        responses: [...cur.responses, jws],
        updatedAt: this.now().toISOString(),
      };
    });
    if (!next) return;
    await this.logResponse(next, from, { outcome, paid, currency: r.currency }, jws);
    this.o.logger.info({ claim: r.id, insurer: from, outcome }, 'claim response verified');
  }
}

/** The charge id of a claim's benefit: derived from the claim id, so insurer and hospital log the same charge (counted once). */
export function claimChargeId(claimId: string): string {
  return `c${createHash('sha256').update(`claim\u0000${claimId}`).digest('hex').slice(0, 40)}`;
}
