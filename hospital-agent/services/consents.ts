import { randomUUID } from 'node:crypto';
import type { Ledger, StoredEntry } from '../../ledger/index.ts';
import { type ConsentGrant } from '../consent/fhir.ts';
import type { DecisionLog } from '../consent/decisions.ts';
import { checkConsent, consentSchema, type Consent, type ReleaseRequest } from '../consent/model.ts';
import type { Outside } from '../consent/scope.ts';
import { patientHash } from '../consent/patient.ts';
import { AgentError } from '../errors.ts';

/** What a consent the patient signed adds to its ledger entry. */
export interface PatientSignedGrant {
  id: string;
  signature: string;
  signedAt: string;
  device: { crv: 'P-256'; kty: 'EC'; x: string; y: string };
}

/** Why a consent was revoked (the ledger's enumerated reasons). */
export type RevocationReason = 'patient-request' | 'expired' | 'superseded' | 'entered-in-error' | 'legal';

/**
 * Consents of this hospital, kept only as ledger entries of its own feed:
 * `consent.granted` and `consent.revoked`. The patient id is hashed with the
 * hospital's secret before anything is written.
 */
export class ConsentService {
  /** Every consent of this feed, by id; this agent is the only writer of its feed, so the cache is authoritative. */
  private cache: Promise<Map<string, Consent>> | undefined;
  /** Consents whose `consent.revoked` entry is queued but not yet written: refused already. */
  private readonly revoking = new Set<string>();

  constructor(
    private readonly ledger: Ledger,
    private readonly feed: string,
    private readonly secret: Buffer,
    private readonly now: () => Date = () => new Date(),
    /** The hospital's own patient identifier system (`patients.identifierSystem`): what a bare patient id is a value of. */
    private readonly identifierSystem?: string,
    /** Where the release gate's decisions are kept (consent/decisions.ts); none: not kept. */
    private readonly decisions?: DecisionLog,
    /** Throws (422 ERR_MEMBER_*) for a grantee the federation's member directory does not list as active. */
    private readonly member?: (id: string) => void,
  ) {}

  /**
   * Records a consent; returns it as stored. `signed` records a consent the patient signed (hospital-agent/patients/):
   * its id, the device key and the signature go into the ledger entry with it.
   */
  async grant(grant: ConsentGrant, signed?: PatientSignedGrant): Promise<Consent> {
    const at = this.now();
    const validFrom = grant.validFrom ?? at.toISOString();
    if (new Date(grant.validUntil).getTime() <= new Date(validFrom).getTime()) {
      throw new AgentError('ERR_BAD_REQUEST', 'validUntil must be after validFrom');
    }
    if (grant.grantees.includes(this.feed)) throw new AgentError('ERR_BAD_REQUEST', 'a hospital cannot be the grantee of its own consent');
    for (const grantee of grant.grantees) this.member?.(grantee);
    const id = signed?.id ?? randomUUID();
    const body = {
      consent: id,
      patient: patientHash(this.secret, grant.patientId, this.identifierSystem),
      grantees: grant.grantees,
      purposes: grant.purposes,
      scope: grant.scope,
      ...(grant.categories && grant.categories.length > 0 ? { categories: grant.categories } : {}),
      ...(grant.labels && grant.labels.length > 0 ? { labels: grant.labels } : {}),
      validFrom: new Date(validFrom).toISOString(),
      validUntil: new Date(grant.validUntil).toISOString(),
      ...(signed ? { attestation: 'patient-signed' as const, signature: signed.signature, signedAt: signed.signedAt, device: signed.device } : {}),
    };
    const appended = await this.ledger.append({ type: 'consent.granted', body });
    const consent = consentSchema.parse({
      id,
      patientHash: body.patient,
      grantees: body.grantees,
      purposes: body.purposes,
      scope: body.scope,
      ...(body.categories ? { categories: body.categories } : {}),
      ...(body.labels ? { labels: body.labels } : {}),
      validFrom: body.validFrom,
      validUntil: body.validUntil,
      grantedAt: appended.ts,
    });
    (await this.all()).set(id, consent);
    return { ...consent };
  }

  /**
   * Revokes a consent; revoking twice is refused with ERR_CONFLICT. From the
   * moment its `consent.revoked` entry is queued (not when it is on disk),
   * every check refuses the consent: a release checked before that moment
   * was logged before the revocation ({@link checkThen}).
   */
  async revoke(id: string, reason: RevocationReason = 'patient-request', signed?: { signature: string; signedAt: string }): Promise<Consent> {
    const consents = await this.all();
    const found = consents.get(id);
    if (!found) throw new AgentError('ERR_NOT_FOUND', `no consent ${id}`);
    const granted = await this.ledger.consentGranted(id, this.feed);
    // Checked after the last await: two revocations at once write one entry.
    const current = consents.get(id) as Consent;
    if (current.revokedAt || this.revoking.has(id))
      throw new AgentError('ERR_CONFLICT', `consent ${id} was already revoked${current.revokedAt ? ` at ${current.revokedAt}` : ''}`);
    this.revoking.add(id);
    try {
      const appended = await this.ledger.append({
        type: 'consent.revoked',
        body: { consent: id, reason, ...(signed ?? {}) },
        ...(granted ? { refs: [granted.hash] } : {}),
      });
      const revoked = { ...current, revokedAt: appended.ts, revocationReason: reason };
      consents.set(id, revoked);
      return { ...revoked };
    } finally {
      this.revoking.delete(id);
    }
  }

  /** One consent of this hospital, or undefined. */
  async get(id: string): Promise<Consent | undefined> {
    const c = (await this.all()).get(id);
    return c ? { ...c } : undefined;
  }

  /** Every consent of this hospital, newest first. */
  async list(): Promise<Consent[]> {
    return [...(await this.all()).values()].map((c) => ({ ...c })).sort((a, b) => b.grantedAt.localeCompare(a.grantedAt));
  }

  /** Loads the consents of this feed from the ledger once. */
  private all(): Promise<Map<string, Consent>> {
    this.cache ??= (async () => {
      const own = (e: StoredEntry): boolean => e.entry.feed === this.feed;
      const granted = (await this.ledger.byType('consent.granted', this.feed)).filter(own);
      const revoked = (await this.ledger.byType('consent.revoked', this.feed)).filter(own);
      return new Map(this.fold([...granted, ...revoked]).map((c) => [c.id, c]));
    })();
    return this.cache;
  }

  /**
   * A consent of this hospital that covers `request` (e.g. for a records
   * request from another hospital), or the refusal that applies to the
   * closest one: ERR_CONSENT_MISSING when none names the patient and recipient.
   */
  async findCovering(request: ReleaseRequest): Promise<{ consent: Consent } | { refusal: AgentError }> {
    let refusal: AgentError | undefined;
    for (const c of await this.list()) {
      try {
        checkConsent(c, request);
        return { consent: c };
      } catch (err) {
        if (err instanceof AgentError && err.code !== 'ERR_CONSENT_MISSING') refusal ??= err;
      }
    }
    return { refusal: refusal ?? new AgentError('ERR_CONSENT_MISSING', `no consent covers this patient for '${request.recipient}'`) };
  }

  /** Checks that consent `id` covers `request` (at submission); throws the ERR_CONSENT_* refusal otherwise, and logs it. */
  async check(id: string, request: ReleaseRequest): Promise<Consent> {
    const consents = await this.all();
    try {
      return this.checkLoaded(consents, id, request);
    } catch (err) {
      this.logDecision('admit', id, request, err);
      throw err;
    }
  }

  /**
   * Checks consent `id` as {@link check} does, then runs `then` (e.g. the
   * `append` of `exchange.sent`) in the same tick: nothing can revoke the
   * consent in between, so the ledger never logs a release after the
   * revocation that should have stopped it.
   */
  async checkThen<T>(id: string, request: ReleaseRequest, then: () => T): Promise<{ result: T }> {
    const consents = await this.all();
    try {
      this.checkLoaded(consents, id, request);
    } catch (err) {
      this.logDecision('release', id, request, err);
      throw err;
    }
    this.logDecision('release', id, request);
    // Wrapped, so a promise `then` returns is handed over, not awaited here.
    return { result: then() };
  }

  /** Logs a decision of the release gate: a permit, or the refusal `err` (anything else thrown is not a decision). */
  private logDecision(stage: 'admit' | 'release', id: string, request: ReleaseRequest, err?: unknown): void {
    if (!this.decisions || (err !== undefined && !(err instanceof AgentError && err.code.startsWith('ERR_CONSENT_')))) return;
    const refusal = err as AgentError | undefined;
    const outside = refusal?.detail?.['outside'] as Outside | undefined;
    this.decisions.record({
      at: this.now().toISOString(),
      decision: refusal ? 'deny' : 'permit',
      stage,
      consent: id,
      patient: request.patientHash,
      recipient: request.recipient,
      purpose: request.purpose,
      ...(request.exchange ? { exchange: request.exchange } : {}),
      ...(refusal ? { code: refusal.code } : {}),
      ...(outside ? { outside } : {}),
    });
  }

  private checkLoaded(consents: Map<string, Consent>, id: string, request: ReleaseRequest): Consent {
    const consent = consents.get(id);
    if (consent && this.revoking.has(id)) throw new AgentError('ERR_CONSENT_REVOKED', `consent ${id} is being revoked`, { detail: { consentId: id } });
    checkConsent(consent, request);
    return { ...(consent as Consent) };
  }

  private fold(entries: StoredEntry[]): Consent[] {
    const byId = new Map<string, Consent>();
    const revocations = new Map<string, { ts: string; reason: RevocationReason }>();
    for (const { entry } of entries) {
      if (entry.type === 'consent.granted') {
        const b = entry.body as {
          consent: string;
          patient: string;
          grantees: string[];
          purposes: Consent['purposes'];
          scope: string[];
          categories?: string[];
          labels?: string[];
          validFrom: string;
          validUntil?: string;
        };
        byId.set(b.consent, {
          id: b.consent,
          patientHash: b.patient,
          grantees: b.grantees,
          purposes: b.purposes,
          scope: b.scope,
          ...(b.categories ? { categories: b.categories } : {}),
          ...(b.labels ? { labels: b.labels } : {}),
          validFrom: b.validFrom,
          validUntil: b.validUntil ?? '9999-12-31T23:59:59.999Z',
          grantedAt: entry.ts,
        });
      } else if (entry.type === 'consent.revoked') {
        const b = entry.body as { consent: string; reason: RevocationReason };
        if (!revocations.has(b.consent)) revocations.set(b.consent, { ts: entry.ts, reason: b.reason });
      }
    }
    for (const [id, r] of revocations) {
      const c = byId.get(id);
      if (c) Object.assign(c, { revokedAt: r.ts, revocationReason: r.reason });
    }
    return [...byId.values()];
  }
}
