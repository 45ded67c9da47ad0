/**
 * FHIR Bundle validation off the agent's main thread.
 *
 * Validating a small Bundle against the R4 definitions costs about as much
 * CPU as everything else the sending agent does for the exchange (see
 * docs/performance.md, "Small exchanges: validation off the main thread"),
 * and the main thread is the one thread every exchange passes through. A
 * {@link FhirValidationPool} runs {@link validateFhirBundle} in worker
 * threads, each with its own copy of the definitions, so the main thread is
 * left the rest of the work and a large Bundle's validation no longer holds
 * up every other request.
 *
 * The answer is the same as validating on the main thread: the Bundle's kinds
 * of data ({@link bundleKinds}) and entries, or the same 400/422 {@link AgentError} with
 * the same issues. Nothing is lost when a thread fails: the Bundles it was
 * given are validated on the main thread and the thread is replaced (at most
 * {@link MAX_RESTARTS_PER_MINUTE} times a minute per slot; past that the slot
 * stays empty and its share is validated on the main thread).
 */
import type { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { moduleWorker } from '../../common/worker.ts';
import type { PatientName } from '../consent/patient.ts';
import { AgentError, type AgentErrorCode, type FhirIssue } from '../errors.ts';
import { validateFhirBundle } from './bundle.ts';
import { bundleKinds, type BundleKinds } from './labels.ts';

/** What validation answers for a valid Bundle: its kinds of data (for the consent's scope) and its number of entries. */
export interface BundleCheck {
  kinds: BundleKinds;
  entries: number;
}

/** Validates a FHIR Bundle's bytes (about `patient` when given) and answers a {@link BundleCheck}, or throws as {@link validateFhirBundle}. */
export interface FhirValidator {
  /** Threads validating now (0: the calling thread). */
  readonly threads: number;
  check(bytes: Buffer, patient?: PatientName): Promise<BundleCheck>;
  close(): Promise<void>;
}

/** Validation on the calling thread (`limits.fhirValidationThreads: 0`). */
export const mainThreadValidator: FhirValidator = {
  threads: 0,
  check: async (bytes, patient) => checkOf(bytes, patient),
  close: () => Promise.resolve(),
};

/** What one validation does, on whichever thread runs it. */
export function checkOf(bytes: Uint8Array, patient: PatientName | undefined): BundleCheck {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const summary = validateFhirBundle(buf, patient ? { patient } : {});
  return { kinds: bundleKinds(summary.bundle), entries: summary.entries };
}

/** Replacements of a failed thread per slot per minute; past this the slot stays empty. */
export const MAX_RESTARTS_PER_MINUTE = 5;

/**
 * Threads when `limits.fhirValidationThreads` is unset: one, on one core
 * too. A Bundle validated on the main thread holds the whole agent (its
 * API; its relay link, which the relay cuts off when a ping goes
 * unanswered for 20 s) for as long as it takes, half a minute for 30 MiB; a
 * thread on a shared core only shares its time.
 */
export const DEFAULT_VALIDATION_THREADS = 1;

/** A request to a validation thread. */
export interface ValidationJob {
  id: number;
  bytes: Uint8Array;
  patient: PatientName | undefined;
}

/** A validation thread's answer: the kinds, or the error as it can cross threads. */
export type ValidationAnswer =
  | { id: number; check: BundleCheck }
  | { id: number; error: { agent: true; code: AgentErrorCode; message: string; issues?: readonly FhirIssue[]; detail?: Record<string, unknown> } }
  | { id: number; error: { agent: false; message: string } };

/** The answer a validation thread gives for `job` (run in the thread; exported for the worker module). */
export function answer(job: ValidationJob): ValidationAnswer {
  try {
    return { id: job.id, check: checkOf(job.bytes, job.patient) };
  } catch (err) {
    if (err instanceof AgentError)
      return {
        id: job.id,
        error: {
          agent: true,
          code: err.code,
          message: err.message,
          ...(err.issues ? { issues: err.issues } : {}),
          ...(err.detail ? { detail: err.detail } : {}),
        },
      };
    return { id: job.id, error: { agent: false, message: err instanceof Error ? err.message : String(err) } };
  }
}

/** A Bundle a thread holds: the caller's bytes (kept for the main thread should the thread fail) and its answer's callbacks. */
interface Pending {
  bytes: Buffer;
  patient: PatientName | undefined;
  resolve: (c: BundleCheck) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker | undefined;
  pending: Map<number, Pending>;
  restarts: number[];
}

/** Bytes of the Bundles a thread holds: its work ahead, roughly (validation time grows with a Bundle's size). */
function queuedBytes(slot: Slot): number {
  let n = 0;
  for (const p of slot.pending.values()) n += p.bytes.byteLength;
  return n;
}

/**
 * Bytes of Bundles waiting on a thread past which a small Bundle is
 * validated on the main thread rather than behind them: about a second of
 * validation on a 2-core Xeon (a 30 MiB Bundle takes about 25 s).
 */
export const BUSY_THREAD_BYTES = 1024 * 1024;
/** Largest Bundle the main thread takes when every thread is busy: a few milliseconds of validation. */
export const MAIN_THREAD_BUNDLE_BYTES = 16 * 1024;

/** The worker module, as built (`dist/`) or as TypeScript source. */
const WORKER_URL = new URL(import.meta.url.endsWith('.ts') ? './validation-worker.ts' : './validation-worker.js', import.meta.url);

/** A validation thread, as the pool starts each one. */
export function startValidationWorker(): Worker {
  return moduleWorker(WORKER_URL, { name: 'fhir-validation' });
}

/**
 * Validation in `threads` worker threads; each Bundle goes to the thread
 * with the fewest bytes of Bundles waiting, and a small one
 * ({@link MAIN_THREAD_BUNDLE_BYTES}) is validated on the main thread when
 * every thread has more than {@link BUSY_THREAD_BYTES} waiting, so that it
 * never waits behind a large Bundle's validation.
 */
export class FhirValidationPool implements FhirValidator {
  private readonly slots: Slot[];
  private next = 1;
  private closed = false;

  constructor(
    threads: number,
    private readonly log?: Logger,
    private readonly spawn: () => Worker = startValidationWorker,
  ) {
    if (!Number.isInteger(threads) || threads < 1) throw new RangeError('a validation pool needs at least one thread');
    this.slots = Array.from({ length: threads }, () => ({ worker: undefined, pending: new Map(), restarts: [] }));
    for (const slot of this.slots) this.start(slot);
  }

  /** Threads running now (a slot whose thread failed too often stays empty). */
  get threads(): number {
    return this.slots.filter((s) => s.worker !== undefined).length;
  }

  check(bytes: Buffer, patient?: PatientName): Promise<BundleCheck> {
    if (this.closed) return Promise.reject(new AgentError('ERR_INTERNAL', 'the agent is stopping'));
    let slot: Slot | undefined;
    let queued = 0;
    for (const s of this.slots) {
      if (!s.worker) continue;
      const q = queuedBytes(s);
      if (slot && (q > queued || (q === queued && s.pending.size >= slot.pending.size))) continue;
      slot = s;
      queued = q;
    }
    if (!slot?.worker || (queued > BUSY_THREAD_BYTES && bytes.byteLength <= MAIN_THREAD_BUNDLE_BYTES)) return mainThreadValidator.check(bytes, patient);
    // The thread gets its own copy (the caller keeps the body; a Buffer may be a view of a larger pool).
    const copy = new Uint8Array(bytes.byteLength);
    copy.set(bytes);
    const job: ValidationJob = { id: this.next++, bytes: copy, patient };
    const worker = slot.worker;
    return new Promise<BundleCheck>((resolve, reject) => {
      slot.pending.set(job.id, { bytes, patient, resolve, reject });
      worker.postMessage(job, [copy.buffer]);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const stopping = this.slots.map(async (slot) => {
      const w = slot.worker;
      slot.worker = undefined;
      for (const p of slot.pending.values()) p.reject(new AgentError('ERR_INTERNAL', 'the agent is stopping'));
      slot.pending.clear();
      if (w) await w.terminate();
    });
    await Promise.all(stopping);
  }

  private start(slot: Slot): void {
    const worker = this.spawn();
    slot.worker = worker;
    worker.unref();
    worker.on('message', (m: ValidationAnswer) => {
      const p = slot.pending.get(m.id);
      if (!p) return;
      slot.pending.delete(m.id);
      if ('check' in m) p.resolve(m.check);
      else if (m.error.agent) p.reject(new AgentError(m.error.code, m.error.message, { issues: m.error.issues, detail: m.error.detail }));
      else p.reject(new Error(m.error.message));
    });
    const failed = (why: string): void => {
      if (slot.worker !== worker) return;
      slot.worker = undefined;
      if (this.closed) return;
      // What it was given is validated here instead: the caller gets the answer it would have had.
      const orphans = [...slot.pending.values()];
      slot.pending.clear();
      this.log?.warn({ pending: orphans.length, why }, 'a FHIR validation thread failed; its Bundles are validated on the main thread');
      for (const p of orphans) {
        try {
          p.resolve(checkOf(p.bytes, p.patient));
        } catch (err) {
          p.reject(err as Error);
        }
      }
      const now = Date.now();
      slot.restarts = slot.restarts.filter((t) => now - t < 60_000);
      if (slot.restarts.length >= MAX_RESTARTS_PER_MINUTE) {
        this.log?.error({ restarts: slot.restarts.length }, 'a FHIR validation thread keeps failing; its share is validated on the main thread');
        return;
      }
      slot.restarts.push(now);
      this.start(slot);
    };
    // Only the failure's kind is logged: a message could quote what the thread was reading.
    worker.on('error', (err: Error) => failed(err.name));
    worker.on('exit', (code) => failed(`exit ${code}`));
  }
}

/** The validator `limits.fhirValidationThreads` asks for (unset: {@link DEFAULT_VALIDATION_THREADS}). */
export function fhirValidator(threads: number | undefined, log?: Logger): FhirValidator {
  const n = threads ?? DEFAULT_VALIDATION_THREADS;
  return n === 0 ? mainThreadValidator : new FhirValidationPool(n, log);
}
