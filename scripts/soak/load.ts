// The soak's mixed load, as EHRs would drive the agents' APIs: small FHIR bundles, multi-MiB binaries, records
// requests (and the holder's EHR answering accepted ones), and consent changes (revoke, then grant anew). It keeps
// the book the final checks read: every exchange an API accepted (202), with the hash of what was sent.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Prng } from './prng.ts';
import type { AgentMember } from './procs.ts';

const BUNDLE = JSON.parse(readFileSync(fileURLToPath(new URL('../fixtures/small-bundle.json', import.meta.url)), 'utf8')) as {
  id: string;
  entry: Array<{ resource: { resourceType: string; identifier?: Array<{ value: string }> } }>;
};
/** One API call may take this long (a multi-MiB upload on a busy machine included). */
const CALL_TIMEOUT_MS = 60_000;
/** Patients per (holder, recipient) pair: each has a consent the load revokes and grants again. */
const PATIENTS_PER_PAIR = 2;

/** An exchange the sender's API accepted. */
export interface Accepted {
  id: string;
  from: string;
  to: string;
  kind: 'fhir' | 'binary' | 'answer';
  sha256: string;
  bytes: number;
}

/** What the load did, by outcome. */
export interface LoadBook {
  accepted: Map<string, Accepted>;
  /** Submissions the API refused, by error code (e.g. a consent revoked a moment before). */
  refused: Map<string, number>;
  /** Calls cut by a kill (connection reset, timeout) or skipped because the agent was down. */
  cut: number;
  skipped: number;
  consents: { granted: number; revoked: number; failed: number };
  requests: { sent: number; refusedAtSend: number; answered: number; ids: Array<{ id: string; requester: string }> };
}

/** A consent slot: `holder` may release `patientId`'s records to `grantee` under `consentId` (absent while it changes). */
interface Slot {
  holder: string;
  grantee: string;
  patientId: string;
  consentId?: string;
  busy: boolean;
}

/** An agent's API answer. */
interface Answer<T> {
  status: number;
  body: T;
}

/** Calls an agent's API with the soak token; rejects when the connection fails or times out. */
export async function call<T = Record<string, unknown>>(
  a: AgentMember,
  token: string,
  path: string,
  init: RequestInit = {},
  ms = CALL_TIMEOUT_MS,
): Promise<Answer<T>> {
  const res = await fetch(`http://127.0.0.1:${a.apiPort()}${path}`, {
    ...init,
    signal: AbortSignal.timeout(ms),
    headers: { authorization: `Bearer ${token}`, ...(init.headers as Record<string, string> | undefined) },
  });
  const text = await res.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : {};
  } catch {
    body = { text };
  }
  return { status: res.status, body: body as T };
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const errorCode = (body: unknown): string => (body as { error?: { code?: string } }).error?.code ?? 'unknown';

/** A FHIR Bundle naming `patientId` (the agent reads the patient from the content). */
function bundle(patientId: string, tag: string): Buffer {
  const b = structuredClone(BUNDLE);
  b.id = `soak-${tag}`;
  for (const e of b.entry) if (e.resource.resourceType === 'Patient' && e.resource.identifier?.[0]) e.resource.identifier[0].value = patientId;
  return Buffer.from(JSON.stringify(b));
}

/** The load generator over `agents`; `rng` makes every choice. */
export class Load {
  readonly book: LoadBook = {
    accepted: new Map(),
    refused: new Map(),
    cut: 0,
    skipped: 0,
    consents: { granted: 0, revoked: 0, failed: 0 },
    requests: { sent: 0, refusedAtSend: 0, answered: 0, ids: [] },
  };
  private readonly slots: Slot[] = [];
  private readonly byId: Map<string, AgentMember>;
  private seq = 0;
  /** Incoming requests whose answer the API refused (e.g. the consent was revoked since): not retried. */
  private readonly unanswerable = new Set<string>();

  constructor(
    private readonly agents: AgentMember[],
    private readonly token: string,
    private readonly rng: Prng,
    /** Whether consent changes (revoke, then grant anew) are part of the load. */
    private readonly revoke = true,
  ) {
    this.byId = new Map(agents.map((a) => [a.id, a]));
    for (const h of agents)
      for (const g of agents)
        if (h !== g)
          for (let k = 0; k < PATIENTS_PER_PAIR; k += 1) this.slots.push({ holder: h.id, grantee: g.id, patientId: `SYN-${h.id}-${g.id}-${k}`, busy: false });
  }

  private agent(id: string): AgentMember {
    return this.byId.get(id)!;
  }

  private refuse(code: string): void {
    this.book.refused.set(code, (this.book.refused.get(code) ?? 0) + 1);
  }

  /** Grants every slot's first consent (before any kill). */
  async grantAll(): Promise<void> {
    for (const s of this.slots) if (!(await this.grant(s))) throw new Error(`initial consent grant at ${s.holder} for ${s.grantee} failed`);
  }

  private async grant(s: Slot): Promise<boolean> {
    try {
      const r = await call<{ id: string }>(this.agent(s.holder), this.token, '/v1/consents', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ patientId: s.patientId, grantee: s.grantee, validUntil: new Date(Date.now() + 86_400_000).toISOString() }),
      });
      if (r.status !== 201) {
        this.book.consents.failed += 1;
        return false;
      }
      s.consentId = r.body.id;
      this.book.consents.granted += 1;
      return true;
    } catch {
      this.book.consents.failed += 1;
      return false;
    }
  }

  /** Revokes a slot's consent and grants a new one; exchanges queued under the old one may fail (ERR_CONSENT_REVOKED). */
  private async changeConsent(s: Slot): Promise<void> {
    s.busy = true;
    try {
      const old = s.consentId;
      s.consentId = undefined;
      if (old) {
        try {
          const r = await call(this.agent(s.holder), this.token, `/v1/consents/${old}?reason=patient-request`, { method: 'DELETE' });
          if (r.status === 200) this.book.consents.revoked += 1;
          else this.book.consents.failed += 1;
        } catch {
          // Killed meanwhile: the old consent may or may not be revoked; the slot moves on to a new one either way.
          this.book.consents.failed += 1;
        }
      }
      await this.grant(s);
    } finally {
      s.busy = false;
    }
  }

  /** Submits one exchange; books it when the API accepted it. */
  private async submit(
    from: AgentMember,
    to: string,
    kind: Accepted['kind'],
    o: { consentId: string; patientId: string; body: Buffer; contentType: string; headers?: Record<string, string> },
  ): Promise<'accepted' | 'refused' | 'cut'> {
    try {
      const r = await call<{ id: string }>(from, this.token, '/v1/exchanges', {
        method: 'POST',
        headers: {
          'content-type': o.contentType,
          'hie-recipient': to,
          'hie-patient-id': o.patientId,
          'hie-consent-id': o.consentId,
          'content-length': String(o.body.length),
          ...o.headers,
        },
        body: o.body,
      });
      // 200: an earlier submission with the same Idempotency-Key, accepted even if its 202 was lost to a kill.
      if (r.status === 202 || r.status === 200) {
        if (!this.book.accepted.has(r.body.id)) {
          this.book.accepted.set(r.body.id, { id: r.body.id, from: from.id, to, kind, sha256: sha256(o.body), bytes: o.body.length });
          if (kind === 'answer') this.book.requests.answered += 1;
        }
        return 'accepted';
      }
      this.refuse(errorCode(r.body));
      return 'refused';
    } catch {
      this.book.cut += 1;
      return 'cut';
    }
  }

  /** One random operation. */
  async step(): Promise<void> {
    const ready = this.slots.filter((s) => !s.busy && s.consentId);
    if (ready.length === 0) return;
    const s = this.rng.pick(ready);
    const from = this.agent(s.holder);
    const roll = this.rng.next();
    if (roll < 0.1) {
      if (this.revoke) await this.changeConsent(s);
      return;
    }
    const requester = this.agent(s.grantee);
    const down = roll < 0.25 ? requester : from;
    if (!down.up()) {
      this.book.skipped += 1;
      return;
    }
    if (roll < 0.25) {
      try {
        const r = await call<{ id: string }>(requester, this.token, '/v1/requests', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ holder: s.holder, patientId: s.patientId }),
        });
        if (r.status === 202) {
          this.book.requests.sent += 1;
          this.book.requests.ids.push({ id: r.body.id, requester: requester.id });
        } else this.book.requests.refusedAtSend += 1;
      } catch {
        this.book.cut += 1;
      }
      return;
    }
    const n = (this.seq += 1);
    if (roll < 0.4) {
      const size = this.rng.int(1, 6) * 1024 * 1024 + this.rng.int(0, 4095);
      await this.submit(from, s.grantee, 'binary', {
        consentId: s.consentId!,
        patientId: s.patientId,
        body: this.rng.bytes(size),
        contentType: 'application/octet-stream',
      });
      return;
    }
    await this.submit(from, s.grantee, 'fhir', {
      consentId: s.consentId!,
      patientId: s.patientId,
      body: bundle(s.patientId, String(n)),
      contentType: 'application/fhir+json',
    });
  }

  /** The holder's EHR: answers every accepted incoming records request with a bundle (Idempotency-Key: the request id). */
  async answerRequests(): Promise<void> {
    for (const holder of this.agents) {
      if (!holder.up()) continue;
      let list: Array<{ id: string; peer: string; status: string; patientId?: string; consentId?: string }>;
      try {
        list = (await call<{ requests: typeof list }>(holder, this.token, '/v1/requests?direction=incoming')).body.requests ?? [];
      } catch {
        continue;
      }
      for (const r of list) {
        if (r.status !== 'accepted' || !r.patientId || !r.consentId) continue;
        if (this.unanswerable.has(r.id)) continue;
        // The same bytes on every attempt: a retry with the same Idempotency-Key names the same exchange.
        const ok = await this.submit(holder, r.peer, 'answer', {
          consentId: r.consentId,
          patientId: r.patientId,
          body: bundle(r.patientId, `answer-${r.id}`),
          contentType: 'application/fhir+json',
          headers: { 'hie-request-id': r.id, 'idempotency-key': `answer-${r.id}` },
        });
        if (ok === 'refused') this.unanswerable.add(r.id);
      }
    }
  }
}
