// One job: the prescription Task's state machine (E-Rezept's), as pure functions over the owner's record.
import type { AgentErrorCode } from '../errors.ts';

/** Task states (FHIR TaskStatus codes E-Rezept uses). */
export const TASK_STATES = ['ready', 'in-progress', 'completed', 'cancelled'] as const;
/** One of {@link TASK_STATES}. */
export type TaskState = (typeof TASK_STATES)[number];

/** The prescription Task as its owner, the prescribing hospital's agent, keeps it. No access code, no secret: hashes only. */
export interface PrescriptionTask {
  id: string;
  status: TaskState;
  /** SHA-256 (hex) of the access code handed to the patient. */
  accessCodeHash: string;
  /** The keyed patient hash (as the ledger carries it). */
  patient: string;
  /** The signed MedicationRequest (compact JWS by the agent's Ed25519 key). */
  medicationRequest: string;
  /** SHA-256 (base64url) of that JWS. */
  medicationRequestHash: string;
  createdAt: string;
  updatedAt: string;
  /** in-progress, completed: the pharmacy that accepted it. */
  pharmacy?: string;
  /** in-progress: when it was accepted (the secret is derived from it). */
  acceptedAt?: string;
  /** in-progress: SHA-256 (hex) of the secret given to the pharmacy. */
  secretHash?: string;
  /** completed: SHA-256 (base64url) of the MedicationDispense, and the signed receipt returned. */
  dispenseHash?: string;
  receipt?: string;
  completedAt?: string;
  /** cancelled: by whom. */
  cancelledBy?: 'prescriber' | 'patient';
  /**
   * Transitions so far (issue included) and the ledger entry of the last one, written with the state: an entry a
   * crash kept from the ledger is appended at the next start (PrescriptionService.reconcile).
   */
  transitions?: number;
  last?: { type: RxEntryType; body: Record<string, unknown> };
}

/** The ledger entry types of prescriptions (ledger/schema.ts). */
export const RX_ENTRY_TYPES = [
  'prescription.issued',
  'prescription.accepted',
  'prescription.rejected',
  'prescription.completed',
  'prescription.cancelled',
] as const;
/** One of {@link RX_ENTRY_TYPES}. */
export type RxEntryType = (typeof RX_ENTRY_TYPES)[number];

/** A refused step: the agent's error code (E-Rezept's status in brackets in the message). */
export interface Refusal {
  code: AgentErrorCode;
  message: string;
}

const refuse = (code: AgentErrorCode, message: string): Refusal => ({ code, message });

/** What the owner checked before deciding: whether the access code (accept, patient abort) or the secret and pharmacy (reject, close) match. */
export interface Presented {
  codeMatches?: boolean;
  secretMatches?: boolean;
  /** The caller is the pharmacy the Task is in progress with. */
  holder?: boolean;
}

/**
 * Whether `$accept` may move the Task to in-progress. A wrong code is 403
 * before anything about the state is said; then cancelled 410, in progress
 * 409, completed 412. A retry by the holder itself (its answer lost) is
 * `again`: it gets the same secret back.
 */
export function checkAccept(task: PrescriptionTask, p: Presented): Refusal | 'ok' | 'again' {
  if (!p.codeMatches) return refuse('ERR_RX_FORBIDDEN', 'wrong access code (403)');
  if (task.status === 'cancelled') return refuse('ERR_RX_CANCELLED', 'the prescription was cancelled (410)');
  if (task.status === 'in-progress') return p.holder ? 'again' : refuse('ERR_RX_IN_PROGRESS', 'the prescription is already in progress at a pharmacy (409)');
  if (task.status !== 'ready') return refuse('ERR_RX_WRONG_STATE', `the prescription is ${task.status}, not ready (412)`);
  return 'ok';
}

/** Whether `$reject` or `$close` may proceed: the Task must be in progress with this pharmacy, and the secret must match. */
export function checkHeld(task: PrescriptionTask, p: Presented): Refusal | 'ok' {
  if (task.status === 'cancelled') return refuse('ERR_RX_CANCELLED', 'the prescription was cancelled (410)');
  if (task.status !== 'in-progress') return refuse('ERR_RX_WRONG_STATE', `the prescription is ${task.status}, not in progress (412)`);
  if (!p.holder || !p.secretMatches) return refuse('ERR_RX_FORBIDDEN', 'wrong secret, or the prescription is held by another pharmacy (403)');
  return 'ok';
}

/** Whether `$abort` by the prescriber (no code) or the patient (with the access code) may cancel the Task. */
export function checkAbort(task: PrescriptionTask, by: 'prescriber' | 'patient', p: Presented): Refusal | 'ok' {
  if (by === 'patient' && !p.codeMatches) return refuse('ERR_RX_FORBIDDEN', 'wrong access code (403)');
  if (task.status === 'cancelled') return refuse('ERR_RX_CANCELLED', 'the prescription is already cancelled (410)');
  if (task.status === 'in-progress') return refuse('ERR_RX_IN_PROGRESS', 'a pharmacy is dispensing the prescription; it cannot be aborted now (409)');
  if (task.status !== 'ready') return refuse('ERR_RX_WRONG_STATE', `the prescription is ${task.status} (412)`);
  return 'ok';
}
