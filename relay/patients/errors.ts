// One job: the error a refused patient connection carries (its code from the relay's registry, and its HTTP status).
import { RELAY_ERRORS, RelayError } from '../protocol/errors.ts';

/** Codes a patient connection is refused with. */
export type PatientRefusalCode =
  | 'ERR_PATIENT_CREDENTIAL_MALFORMED'
  | 'ERR_PATIENT_CREDENTIAL_UNTRUSTED'
  | 'ERR_PATIENT_CREDENTIAL_SIGNATURE'
  | 'ERR_PATIENT_CREDENTIAL_EXPIRED'
  | 'ERR_PATIENT_POP'
  | 'ERR_PATIENT_HOSPITAL_OFFLINE';

/** A refused patient connection: answered with `status` and `code` before the WebSocket upgrade. Messages hold no claim values. */
export class PatientRefusal extends RelayError {
  declare readonly code: PatientRefusalCode;
  readonly status: number;

  constructor(code: PatientRefusalCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.status = RELAY_ERRORS[code].status;
  }
}
