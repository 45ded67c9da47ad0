/**
 * E-prescriptions (E-Rezept's Task state machine) between the prescribing
 * hospital's agent, which owns each Task, and the pharmacies of the
 * federation: docs/pharmacies.md.
 */
export {
  PrescriptionService,
  RX_CALL_TIMEOUT_MS,
  MAX_RX_CALL_AGE_MS,
  MEDICATION_REQUEST_TYP,
  DISPENSE_RECEIPT_TYP,
  type DispenseReceipt,
  type PrescriptionServiceOptions,
} from './service.ts';
export { PrescriptionStore, type HeldPrescription } from './store.ts';
export {
  TASK_STATES,
  RX_ENTRY_TYPES,
  type RxEntryType,
  checkAccept,
  checkHeld,
  checkAbort,
  type TaskState,
  type PrescriptionTask,
  type Refusal,
  type Presented,
} from './task.ts';
export { ACCESS_CODE_BYTES, newAccessCode, sha256Hex, matchesHash, prescriptionToken, parsePrescriptionToken, tokenPng } from './access.ts';
export { rxWireSchemas, callSchema, replySchema, RX_OPS, MAX_RX_JWE_CHARS, type RxCall, type RxReply, type RxOp } from './wire.ts';
