import { createHash, createHmac, randomUUID } from 'node:crypto';
import { compactVerify, decodeProtectedHeader } from 'jose';
import { jcs, type VerifiedDirectory } from '../../certs/index.ts';
import type { AppendInput, StoredEntry } from '../../ledger/index.ts';
import { patientHash } from '../consent/patient.ts';
import { openSignedMessage, sealSignedMessage, signCompactEdDsa, type LocalKeys } from '../crypto/index.ts';
import { PeerKeyUnavailableError, type PeerDirectory } from '../engine/peers.ts';
import type { EngineLogger } from '../engine/options.ts';
import type { WireMessage } from '../engine/wire.ts';
import { AGENT_ERRORS, AgentError, type AgentErrorCode } from '../errors.ts';
import { validateR4 } from '../fhir/index.ts';
import { matchesHash, newAccessCode, prescriptionToken, sha256Hex } from './access.ts';
import type { HeldPrescription, PrescriptionStore } from './store.ts';
import { checkAbort, checkAccept, checkHeld, RX_ENTRY_TYPES, type PrescriptionTask, type Refusal, type RxEntryType } from './task.ts';
import { callSchema, replySchema, type RxCall, type RxReply } from './wire.ts';

/** How long a pharmacy's agent waits for the prescriber's agent to answer one call, in ms. */
export const RX_CALL_TIMEOUT_MS = 15_000;
/** How old a call may be when it arrives (a replayed call is refused). */
export const MAX_RX_CALL_AGE_MS = 5 * 60_000;
/** JWS `typ` of a signed MedicationRequest and of a dispense receipt. */
export const MEDICATION_REQUEST_TYP = 'hie-medication-request+jws';
export const DISPENSE_RECEIPT_TYP = 'hie-dispense-receipt+jws';

type Json = Record<string, unknown>;
type Rx<T extends string> = Extract<WireMessage, { t: T }>;

/** What a dispense receipt says (signed by the prescriber's agent). */
export interface DispenseReceipt {
  v: 1;
  prescription: string;
  prescriber: string;
  pharmacy: string;
  /** SHA-256 (base64url) of the signed MedicationRequest and of the MedicationDispense (JCS). */
  medicationRequest: string;
  medicationDispense: string;
  completed: string;
}

/** Options of {@link PrescriptionService}. */
export interface PrescriptionServiceOptions {
  self: string;
  /** The patient HMAC secret (patient hashes; a key for the pharmacies' secrets is derived from it). */
  secret: Buffer;
  identifierSystem?: string | undefined;
  store: PrescriptionStore;
  peers: PeerDirectory;
  keys: () => LocalKeys;
  send: (to: string, message: WireMessage) => void;
  ledger: { append(input: AppendInput): Promise<{ hash: string }>; byType(type: RxEntryType, feed?: string): Promise<StoredEntry[]> };
  /** The member directory in force (roles): only active pharmacies may accept. */
  directory: () => VerifiedDirectory | undefined;
  logger: EngineLogger;
  timeoutMs?: number;
  now?: () => Date;
}

const b64sha256 = (text: string): string => createHash('sha256').update(text, 'utf8').digest('base64url');

/** Problems of a FHIR resource of the expected type, as the API's 422 ERR_FHIR_INVALID (references point outside: not checked). */
function assertResource(resource: unknown, type: string): Json {
  if (!resource || typeof resource !== 'object' || Array.isArray(resource) || (resource as Json)['resourceType'] !== type)
    throw new AgentError('ERR_INVALID_FHIR', `expected a FHIR ${type}`);
  const issues = validateR4(resource as Json).filter((i) => i.code !== 'ERR_FHIR_REFERENCE_UNRESOLVED');
  const first = issues[0];
  if (first) throw new AgentError('ERR_FHIR_INVALID', `${type}: ${first.expression}: ${first.message}`, { issues });
  return resource as Json;
}

/**
 * E-prescriptions, both sides. As prescriber, the agent owns each
 * prescription's Task (E-Rezept's state machine, task.ts): it issues a
 * signed MedicationRequest with an access code for the patient, and
 * answers the pharmacies' `$accept`, `$reject` and `$close` calls with an
 * atomic check-and-set in its state db, written before the answer leaves,
 * and one ledger entry per transition. As pharmacy, it calls the
 * prescriber's agent (a sealed, signed message through the relay) and keeps
 * the secret and receipt it gets back.
 */
export class PrescriptionService {
  private readonly pending = new Map<string, { to: string; resolve: (r: RxReply) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private readonly secretKey: Buffer;
  /**
   * Settles once the start-up {@link reconcile} has run. It reads the ledger, then the state: a transition between the
   * two (its state written, its entry not yet appended) would look like one a crash cut short and be appended twice.
   * So transitions that come while it runs wait for it, and it waits for those already under way.
   */
  private reconciled: Promise<unknown> = Promise.resolve();
  private readonly underway = new Set<Promise<unknown>>();

  constructor(private readonly o: PrescriptionServiceOptions) {
    this.secretKey = createHmac('sha256', o.secret).update('hie-rx-secret').digest();
  }

  /** Runs one transition (its state write and its ledger append) outside any reconcile. */
  private async transition<T>(run: () => Promise<T>): Promise<T> {
    for (let gate = this.reconciled; ; gate = this.reconciled) {
      await gate;
      if (gate === this.reconciled) break;
    }
    const p = run();
    this.underway.add(p);
    try {
      return await p;
    } finally {
      this.underway.delete(p);
    }
  }

  private now(): Date {
    return this.o.now?.() ?? new Date();
  }

  // ---- prescriber (owner) ----

  /** Issues a prescription: validates and signs the MedicationRequest, stores the Task as ready; the access code is returned once. */
  issue(input: { patientId: string; medicationRequest: unknown }): Promise<{ task: PrescriptionTask; accessCode: string; token: string }> {
    return this.transition(() => this.issueNow(input));
  }

  private async issueNow(input: { patientId: string; medicationRequest: unknown }): Promise<{ task: PrescriptionTask; accessCode: string; token: string }> {
    const mr = assertResource(input.medicationRequest, 'MedicationRequest');
    const keys = this.o.keys();
    const id = randomUUID();
    const patient = patientHash(this.o.secret, input.patientId, this.o.identifierSystem);
    const jws = signCompactEdDsa(
      jcs({ ...mr, id }),
      { kid: keys.signingKid, typ: MEDICATION_REQUEST_TYP, cty: 'application/fhir+json' },
      keys.signing.privateKey,
    );
    const accessCode = newAccessCode();
    const now = this.now().toISOString();
    const issued = { type: 'prescription.issued' as const, body: { prescription: id, patient, hash: b64sha256(jws) } };
    const task: PrescriptionTask = {
      id,
      status: 'ready',
      accessCodeHash: sha256Hex(accessCode),
      patient,
      medicationRequest: jws,
      medicationRequestHash: b64sha256(jws),
      createdAt: now,
      updatedAt: now,
      transitions: 1,
      last: issued,
    };
    await this.o.store.create(task);
    await this.o.ledger.append(issued);
    return { task, accessCode, token: prescriptionToken(this.o.self, id, accessCode) };
  }

  /** `$abort` at the prescriber: by the prescriber (no code) or by the patient (with the access code). */
  abort(id: string, accessCode?: string): Promise<PrescriptionTask> {
    return this.transition(() => this.abortNow(id, accessCode));
  }

  private async abortNow(id: string, accessCode?: string): Promise<PrescriptionTask> {
    const by = accessCode === undefined ? 'prescriber' : 'patient';
    const r = await this.o.store.update<PrescriptionTask | Refusal>(id, (task) => {
      const check = checkAbort(task, by, { codeMatches: matchesHash(accessCode, task.accessCodeHash) });
      if (check !== 'ok') return { result: check };
      const next: PrescriptionTask = {
        ...this.step(task, { type: 'prescription.cancelled', body: { prescription: id, by } }),
        status: 'cancelled',
        cancelledBy: by,
        updatedAt: this.now().toISOString(),
      };
      return { next, result: next };
    });
    if (!r) throw new AgentError('ERR_NOT_FOUND', 'no such prescription');
    if ('code' in r) throw new AgentError(r.code, r.message);
    await this.o.ledger.append({ type: 'prescription.cancelled', body: { prescription: id, by } });
    return r;
  }

  /** `task` with one more transition, whose ledger entry is `entry`. */
  private step(task: PrescriptionTask, entry: NonNullable<PrescriptionTask['last']>): PrescriptionTask {
    return { ...task, transitions: (task.transitions ?? 1) + 1, last: entry };
  }

  /**
   * Appends the ledger entry of each Task's last transition that a crash kept from the ledger (the state was
   * written, the entry not yet): run at start-up, before calls are answered. Returns how many were appended.
   */
  reconcile(): Promise<number> {
    const before = [...this.underway];
    const run = Promise.allSettled(before).then(() => this.appendMissing());
    this.reconciled = run.catch(() => undefined);
    return run;
  }

  private async appendMissing(): Promise<number> {
    const counts = new Map<string, number>();
    for (const type of RX_ENTRY_TYPES) {
      for (const e of await this.o.ledger.byType(type, this.o.self)) {
        const id = (e.entry.body as { prescription?: string }).prescription;
        if (id) counts.set(id, (counts.get(id) ?? 0) + 1);
      }
    }
    let appended = 0;
    for (const t of await this.o.store.list()) {
      if (t.last && (counts.get(t.id) ?? 0) < (t.transitions ?? 0)) {
        await this.o.ledger.append(t.last as AppendInput);
        appended++;
      }
    }
    return appended;
  }

  /** A pharmacy's call from the relay: opened, checked, decided and answered; a call that does not open is dropped. */
  async onCall(from: string, message: Rx<'rx.call'>): Promise<void> {
    let call: RxCall;
    try {
      const bytes = await openSignedMessage(
        message.jwe,
        this.o.keys().encryption.privateKey,
        async (kid) => (await this.o.peers.signerLookup()(from, kid, this.now()))?.signingKey,
      );
      call = callSchema.parse(JSON.parse(Buffer.from(bytes).toString('utf8')));
      if (call.from !== from || call.to !== this.o.self || call.id !== message.id) throw new Error('call is not addressed from the sender to this agent');
      if (Math.abs(this.now().getTime() - Date.parse(call.created)) > MAX_RX_CALL_AGE_MS) throw new Error('call is too old');
    } catch (err) {
      this.o.logger.warn({ from, call: message.id, err: { message: (err as Error).message } }, 'prescription call rejected');
      return;
    }
    let reply: Omit<RxReply, 'v' | 'id' | 'from' | 'to'>;
    try {
      reply = await this.transition(() => this.decide(from, call));
    } catch (err) {
      const e = err instanceof AgentError ? err : undefined;
      if (!e) this.o.logger.error({ from, call: call.id, op: call.op, err: { message: (err as Error).message } }, 'prescription call failed');
      reply = { ok: false, code: e?.code ?? 'ERR_INTERNAL', message: (e?.message ?? 'internal error').slice(0, 300) };
    }
    this.o.logger.info({ from, prescription: call.task, op: call.op, ok: reply.ok, code: reply.code }, 'prescription call answered');
    await this.reply(from, call.id, reply);
  }

  private async decide(from: string, call: RxCall): Promise<Omit<RxReply, 'v' | 'id' | 'from' | 'to'>> {
    const member = this.o.directory()?.members.get(from);
    if (this.o.directory() && (member?.role !== 'pharmacy' || member.status !== 'active'))
      throw new AgentError('ERR_RX_NOT_PHARMACY', `'${from}' is not an active pharmacy in the member directory`);
    if (call.op === 'accept') return this.acceptCall(from, call.task, call.accessCode);
    if (call.op === 'reject') return this.rejectCall(from, call.task, call.secret);
    return this.closeCall(from, call.task, call.secret, call.dispense);
  }

  private secretFor(id: string, pharmacy: string, acceptedAt: string): string {
    return createHmac('sha256', this.secretKey).update(`${id}\0${pharmacy}\0${acceptedAt}`).digest('hex');
  }

  private async acceptCall(from: string, id: string, accessCode: string): Promise<Omit<RxReply, 'v' | 'id' | 'from' | 'to'>> {
    const r = await this.o.store.update<{ task: PrescriptionTask; fresh: boolean } | Refusal>(id, (task) => {
      const check = checkAccept(task, { codeMatches: matchesHash(accessCode, task.accessCodeHash), holder: task.pharmacy === from });
      if (check === 'again') return { result: { task, fresh: false } };
      if (check !== 'ok') return { result: check };
      const acceptedAt = this.now().toISOString();
      const secret = this.secretFor(id, from, acceptedAt);
      const next: PrescriptionTask = {
        ...this.step(task, { type: 'prescription.accepted', body: { prescription: id, pharmacy: from } }),
        status: 'in-progress',
        pharmacy: from,
        acceptedAt,
        secretHash: sha256Hex(secret),
        updatedAt: acceptedAt,
      };
      return { next, result: { task: next, fresh: true } };
    });
    if (!r) throw new AgentError('ERR_NOT_FOUND', 'no such prescription');
    if ('code' in r) throw new AgentError(r.code, r.message);
    if (r.fresh) await this.o.ledger.append({ type: 'prescription.accepted', body: { prescription: id, pharmacy: from } });
    return { ok: true, status: 'in-progress', secret: this.secretFor(id, from, r.task.acceptedAt!), medicationRequest: r.task.medicationRequest };
  }

  private async rejectCall(from: string, id: string, secret: string): Promise<Omit<RxReply, 'v' | 'id' | 'from' | 'to'>> {
    const r = await this.o.store.update<PrescriptionTask | Refusal>(id, (task) => {
      const check = checkHeld(task, { holder: task.pharmacy === from, secretMatches: matchesHash(secret, task.secretHash) });
      if (check !== 'ok') return { result: check };
      const {
        pharmacy: _p,
        acceptedAt: _a,
        secretHash: _s,
        ...rest
      } = this.step(task, { type: 'prescription.rejected', body: { prescription: id, pharmacy: from } });
      const next: PrescriptionTask = { ...rest, status: 'ready', updatedAt: this.now().toISOString() };
      return { next, result: next };
    });
    if (!r) throw new AgentError('ERR_NOT_FOUND', 'no such prescription');
    if ('code' in r) throw new AgentError(r.code, r.message);
    await this.o.ledger.append({ type: 'prescription.rejected', body: { prescription: id, pharmacy: from } });
    return { ok: true, status: 'ready' };
  }

  private async closeCall(from: string, id: string, secret: string, dispense: Json): Promise<Omit<RxReply, 'v' | 'id' | 'from' | 'to'>> {
    const current = await this.o.store.get(id);
    if (!current) throw new AgentError('ERR_NOT_FOUND', 'no such prescription');
    const early = checkHeld(current, { holder: current.pharmacy === from, secretMatches: matchesHash(secret, current.secretHash) });
    if (early !== 'ok') throw new AgentError(early.code, early.message);
    assertResource(dispense, 'MedicationDispense');
    const completed = this.now().toISOString();
    const dispenseHash = b64sha256(jcs(dispense).toString());
    const keys = this.o.keys();
    const body: DispenseReceipt = {
      v: 1,
      prescription: id,
      prescriber: this.o.self,
      pharmacy: from,
      medicationRequest: current.medicationRequestHash,
      medicationDispense: dispenseHash,
      completed,
    };
    const receipt = signCompactEdDsa(jcs(body), { kid: keys.signingKid, typ: DISPENSE_RECEIPT_TYP }, keys.signing.privateKey);
    // Checked again under the store's lock: a concurrent close or abort may have come first.
    const r = await this.o.store.update<PrescriptionTask | Refusal>(id, (task) => {
      const check = checkHeld(task, { holder: task.pharmacy === from, secretMatches: matchesHash(secret, task.secretHash) });
      if (check !== 'ok') return { result: check };
      const { secretHash: _s, ...rest } = this.step(task, {
        type: 'prescription.completed',
        body: { prescription: id, pharmacy: from, hash: dispenseHash, receipt: b64sha256(receipt) },
      });
      const next: PrescriptionTask = { ...rest, status: 'completed', dispenseHash, receipt, completedAt: completed, updatedAt: completed };
      return { next, result: next };
    });
    if (!r) throw new AgentError('ERR_NOT_FOUND', 'no such prescription');
    if ('code' in r) throw new AgentError(r.code, r.message);
    await this.o.ledger.append({ type: 'prescription.completed', body: { prescription: id, pharmacy: from, hash: dispenseHash, receipt: b64sha256(receipt) } });
    return { ok: true, status: 'completed', receipt };
  }

  private async reply(to: string, id: string, reply: Omit<RxReply, 'v' | 'id' | 'from' | 'to'>): Promise<void> {
    try {
      const bundle = await this.o.peers.encryptionBundle(to);
      const keys = this.o.keys();
      const payload: RxReply = { v: 1, id, from: this.o.self, to, ...reply };
      const jwe = await sealSignedMessage(
        jcs(payload),
        { key: keys.signing.privateKey, kid: keys.signingKid },
        { key: bundle.encryptionKey, kid: bundle.encryptionKid },
      );
      this.o.send(to, { t: 'rx.reply', id, jwe });
    } catch (err) {
      // The pharmacy asks again (an accept by the holder gets the same secret back).
      this.o.logger.warn({ to, call: id, err: { message: (err as Error).message } }, 'prescription answer not sent');
    }
  }

  // ---- pharmacy ----

  /** `$accept` at the prescriber's agent with the patient's access code; keeps the secret; returns the verified MedicationRequest. */
  async accept(input: { prescriber: string; id: string; accessCode: string }): Promise<HeldPrescription & { resource: Json }> {
    if (input.prescriber === this.o.self)
      throw new AgentError('ERR_BAD_REQUEST', 'this agent is the prescriber; a pharmacy accepts prescriptions of other members');
    const reply = await this.call(input.prescriber, { op: 'accept', task: input.id, accessCode: input.accessCode });
    if (!reply.secret || !reply.medicationRequest) throw new AgentError('ERR_INTERNAL', 'the prescriber answered an accept without its secret');
    const resource = await this.verifySigned(input.prescriber, reply.medicationRequest, MEDICATION_REQUEST_TYP);
    const now = this.now().toISOString();
    const prev = await this.o.store.getHeld(input.prescriber, input.id);
    const held: HeldPrescription = {
      prescriber: input.prescriber,
      id: input.id,
      status: 'in-progress',
      secret: reply.secret,
      medicationRequest: reply.medicationRequest,
      acceptedAt: prev?.status === 'in-progress' ? prev.acceptedAt : now,
      updatedAt: now,
    };
    await this.o.store.putHeld(held);
    return { ...held, resource };
  }

  /** `$reject`: hands a held prescription back (ready again at the prescriber). */
  async reject(prescriber: string, id: string): Promise<HeldPrescription> {
    const held = await this.heldInProgress(prescriber, id);
    await this.call(prescriber, { op: 'reject', task: id, secret: held.secret });
    const next: HeldPrescription = { ...held, status: 'rejected', updatedAt: this.now().toISOString() };
    await this.o.store.putHeld(next);
    return next;
  }

  /** `$close` with the MedicationDispense; returns and keeps the prescriber's verified receipt. */
  async close(prescriber: string, id: string, dispense: unknown): Promise<HeldPrescription & { receiptPayload: DispenseReceipt }> {
    const held = await this.heldInProgress(prescriber, id);
    const resource = assertResource(dispense, 'MedicationDispense');
    const reply = await this.call(prescriber, { op: 'close', task: id, secret: held.secret, dispense: resource });
    if (!reply.receipt) throw new AgentError('ERR_INTERNAL', 'the prescriber answered a close without its receipt');
    const receiptPayload = (await this.verifySigned(prescriber, reply.receipt, DISPENSE_RECEIPT_TYP)) as unknown as DispenseReceipt;
    if (
      receiptPayload.prescription !== id ||
      receiptPayload.pharmacy !== this.o.self ||
      receiptPayload.medicationDispense !== b64sha256(jcs(resource).toString())
    )
      throw new AgentError('ERR_INTERNAL', 'the dispense receipt does not name this prescription, pharmacy and dispense');
    const next: HeldPrescription = { ...held, status: 'completed', receipt: reply.receipt, updatedAt: this.now().toISOString() };
    await this.o.store.putHeld(next);
    return { ...next, receiptPayload };
  }

  private async heldInProgress(prescriber: string, id: string): Promise<HeldPrescription> {
    const held = await this.o.store.getHeld(prescriber, id);
    if (!held) throw new AgentError('ERR_NOT_FOUND', 'this pharmacy holds no such prescription');
    if (held.status !== 'in-progress') throw new AgentError('ERR_RX_WRONG_STATE', `the prescription is ${held.status} here, not in progress (412)`);
    return held;
  }

  /** A compact JWS by `signer`'s Ed25519 key, of type `typ`: its JSON payload. */
  private async verifySigned(signer: string, jws: string, typ: string): Promise<Json> {
    try {
      const header = decodeProtectedHeader(jws);
      if (header.typ !== typ || typeof header.kid !== 'string') throw new Error('unexpected JWS header');
      const key = (await this.o.peers.signerLookup()(signer, header.kid, this.now()))?.signingKey;
      if (!key) throw new Error('unknown signing key');
      const { payload } = await compactVerify(jws, key, { algorithms: ['EdDSA'] });
      return JSON.parse(Buffer.from(payload).toString('utf8')) as Json;
    } catch (err) {
      throw new AgentError('ERR_INTERNAL', `the prescriber's signature does not verify: ${(err as Error).message}`);
    }
  }

  /** One call to the prescriber's agent; resolves with its reply, or throws its refusal as the agent's error. */
  private async call(
    to: string,
    body:
      | { op: 'accept'; task: string; accessCode: string }
      | { op: 'reject'; task: string; secret: string }
      | { op: 'close'; task: string; secret: string; dispense: Json },
  ): Promise<RxReply> {
    let bundle;
    try {
      bundle = await this.o.peers.encryptionBundle(to);
    } catch (err) {
      if (err instanceof PeerKeyUnavailableError) throw new AgentError('ERR_RELAY_UNAVAILABLE', `cannot reach '${to}'; try again later`);
      throw err;
    }
    const id = randomUUID();
    const keys = this.o.keys();
    const payload = { v: 1 as const, id, from: this.o.self, to, created: this.now().toISOString(), ...body };
    const jwe = await sealSignedMessage(
      jcs(payload),
      { key: keys.signing.privateKey, kid: keys.signingKid },
      { key: bundle.encryptionKey, kid: bundle.encryptionKid },
    );
    const reply = await new Promise<RxReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new AgentError('ERR_RELAY_UNAVAILABLE', `'${to}' did not answer in time; the call may be repeated`));
      }, this.o.timeoutMs ?? RX_CALL_TIMEOUT_MS);
      this.pending.set(id, { to, resolve, reject, timer });
      this.o.send(to, { t: 'rx.call', id, jwe });
    });
    if (!reply.ok) {
      const code = reply.code && Object.hasOwn(AGENT_ERRORS, reply.code) ? (reply.code as AgentErrorCode) : 'ERR_INTERNAL';
      throw new AgentError(code, `prescriber '${to}': ${reply.message ?? code}`);
    }
    return reply;
  }

  /** The prescriber's answer to one of our calls. */
  async onReply(from: string, message: Rx<'rx.reply'>): Promise<void> {
    const p = this.pending.get(message.id);
    if (!p || p.to !== from) return;
    let reply: RxReply;
    try {
      const bytes = await openSignedMessage(
        message.jwe,
        this.o.keys().encryption.privateKey,
        async (kid) => (await this.o.peers.signerLookup()(from, kid, this.now()))?.signingKey,
      );
      reply = replySchema.parse(JSON.parse(Buffer.from(bytes).toString('utf8')));
      if (reply.from !== from || reply.to !== this.o.self || reply.id !== message.id)
        throw new Error('reply is not addressed from the prescriber to this agent');
    } catch (err) {
      this.o.logger.warn({ from, call: message.id, err: { message: (err as Error).message } }, 'prescription answer rejected');
      return;
    }
    this.pending.delete(message.id);
    clearTimeout(p.timer);
    p.resolve(reply);
  }

  /** Fails every call still waiting (the agent stops). */
  stop(): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new AgentError('ERR_RELAY_UNAVAILABLE', 'the agent is stopping'));
      this.pending.delete(id);
    }
  }
}
