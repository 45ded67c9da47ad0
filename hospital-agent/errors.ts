/**
 * Error codes of the hospital agent, with the HTTP status the local API
 * answers and a one-line description (served in the OpenAPI document and
 * docs/agent.md; a test checks every code is documented).
 */
export const AGENT_ERRORS = {
  ERR_BAD_REQUEST: { status: 400, description: 'The request is malformed: a field is missing, has the wrong type or is out of range.' },
  ERR_INVALID_FHIR: { status: 400, description: 'The body is not the FHIR resource the endpoint expects (e.g. not a Bundle or Consent).' },
  ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, description: 'The Content-Type is not accepted by this endpoint.' },
  ERR_PAYLOAD_TOO_LARGE: { status: 413, description: 'The body exceeds the configured size limit.' },
  ERR_UNAUTHORIZED: { status: 401, description: 'Missing or wrong bearer token.' },
  ERR_RATE_LIMITED: { status: 429, description: 'Too many failed authentication attempts from this address; retry later.' },
  ERR_NOT_FOUND: { status: 404, description: 'No such resource (consent, exchange, inbox item or route).' },
  ERR_CONFLICT: { status: 409, description: 'The request conflicts with the current state (e.g. an Idempotency-Key reused with a different request).' },
  ERR_CONSENT_MISSING: { status: 403, description: 'No consent covers this patient and recipient.' },
  ERR_CONSENT_REVOKED: { status: 403, description: 'The consent was revoked.' },
  ERR_CONSENT_EXPIRED: { status: 403, description: 'The consent is not valid at this time (expired or not yet valid).' },
  ERR_CONSENT_SCOPE: { status: 403, description: 'The consent does not cover this purpose or kind of data.' },
  ERR_CONSENT_SENSITIVE: {
    status: 403,
    description: 'The data carries a sensitive security label (e.g. PSY, HIV, confidentiality R) that the consent does not name explicitly.',
  },
  ERR_CONSENT_SIGNATURE: {
    status: 403,
    description:
      "The consent claims the patient's signature, but the signature does not verify over the consent as recorded (altered after the patient signed).",
  },
  ERR_CONSENT_NOT_PATIENT_SIGNED: {
    status: 403,
    description: 'The recipient requires consents signed by the patient; this one is attested by the hospital only.',
  },
  ERR_PATIENT_ENROLMENT: { status: 403, description: 'The enrolment code is unknown, used already, expired, or for another channel.' },
  ERR_PATIENT_UNKNOWN_DEVICE: { status: 403, description: 'The patient device is not enrolled (or its session did not authenticate); enrol again.' },
  ERR_PATIENT_SIGNATURE: {
    status: 403,
    description: "The patient's signature on a consent approval or revocation does not verify with the enrolled device key.",
  },
  ERR_FHIR_PATIENT_MISMATCH: { status: 422, description: 'The FHIR Bundle is about a patient other than the one the request names (Hie-Patient-Id).' },
  ERR_FHIR_PATIENT_MULTIPLE: { status: 422, description: 'The FHIR Bundle is about more than one patient.' },
  ERR_FHIR_PATIENT_UNRESOLVED: { status: 422, description: 'A resource of the FHIR Bundle refers to a Patient that is not in the Bundle.' },
  ERR_FHIR_PATIENT_MISSING: { status: 422, description: 'The FHIR Bundle has no Patient resource, so it names no patient.' },
  ERR_FHIR_INVALID: {
    status: 422,
    description: 'The FHIR resource does not conform to FHIR R4 (required elements, cardinality, primitive formats, choice types, required codes, invariants).',
  },
  ERR_FHIR_REFERENCE_UNRESOLVED: {
    status: 422,
    description: 'A reference inside the FHIR Bundle (urn:uuid fullUrl, Type/id, #contained) names no entry of the Bundle.',
  },
  ERR_DICOM_INVALID: {
    status: 422,
    description: 'The DICOM body is not a Part 10 file with a Patient ID (0010,0020) in its first bytes (see docs/fhir-validation.md).',
  },
  ERR_DICOM_PATIENT_MISMATCH: {
    status: 422,
    description: "The DICOM file's Patient ID (0010,0020) names a patient other than the one the request names (Hie-Patient-Id).",
  },
  ERR_UNKNOWN_RECIPIENT: { status: 422, description: 'The recipient is not a known hospital of the federation.' },
  ERR_RELAY_UNAVAILABLE: { status: 503, description: 'The other hospital cannot be reached right now (records requests, which are not queued); retry later.' },
  ERR_INSUFFICIENT_STORAGE: {
    status: 507,
    description: "The agent's data directory is full: nothing was stored or sent for this request; retry once space is freed.",
  },
  ERR_MEMBER_UNKNOWN: {
    status: 422,
    description: 'The recipient (of an exchange, or the grantee of a consent) is not listed in the federation member directory.',
  },
  ERR_MEMBER_SUSPENDED: {
    status: 422,
    description: 'The recipient is suspended in the federation member directory: nothing is sent to it or granted to it now.',
  },
  ERR_MEMBER_REVOKED: { status: 422, description: 'The recipient is revoked in the federation member directory: it is no longer a member.' },
  ERR_INTERNAL: { status: 500, description: 'An unexpected error; details are in the agent log under the request id.' },
  ERR_RECOVERING: {
    status: 503,
    description:
      'The agent is getting its own ledger feed back from its peers after a restart (docs/recovery.md); writes wait: retry after Retry-After seconds.',
  },
  ERR_FORBIDDEN_ROLE: {
    status: 403,
    description: 'The token is valid but its role does not allow this route (ehr: /v1; compliance: /console and /fhir; admin: all).',
  },
  ERR_CSRF: { status: 403, description: 'A console form was posted without its CSRF token, or with a wrong one; reload the page and retry.' },
  ERR_RX_IN_PROGRESS: {
    status: 409,
    description: 'The prescription is already in progress: another pharmacy accepted it (E-Rezept 409), or it cannot be aborted now.',
  },
  ERR_RX_CANCELLED: { status: 410, description: 'The prescription was cancelled by the prescriber or the patient (E-Rezept 410).' },
  ERR_RX_WRONG_STATE: {
    status: 412,
    description: 'The prescription is not in a state that allows this step, e.g. closing one that is ready or dispensing one already completed (E-Rezept 412).',
  },
  ERR_RX_FORBIDDEN: { status: 403, description: 'Wrong access code or secret, or the prescription is held by another pharmacy (E-Rezept 403).' },
  ERR_RX_NOT_PHARMACY: { status: 403, description: 'The member directory does not list the caller as an active pharmacy, so it cannot accept prescriptions.' },
  ERR_MEMBER_NOT_INSURER: {
    status: 422,
    description: 'A claim was addressed to a member whose role in the federation member directory is not insurer (or no directory is in force).',
  },
  ERR_CLAIM_INVALID: {
    status: 422,
    description: 'The Claim lacks what a claim through the federation needs: an identifier (system and value), a total in whole minor units, items, insurance.',
  },
  ERR_CLAIM_STATE: { status: 409, description: 'The claim is already adjudicated: an insurer answers a pended (queued) claim once.' },
  ERR_CERTIFICATES_DISABLED: { status: 409, description: 'This agent issues no SMART Health Cards: certificates.iss is not set (docs/certificates.md).' },
  ERR_CERTIFICATE_BUNDLE: {
    status: 422,
    description:
      'The FHIR Bundle cannot make a card of this purpose (no or several Patients, no resource the purpose shows, a sick-leave card without its period).',
  },
} as const satisfies Record<string, { status: number; description: string }>;

/** A documented agent error code. */
export type AgentErrorCode = keyof typeof AGENT_ERRORS;

/** One problem in a FHIR resource: its code, its FHIRPath location and what is wrong (no values). */
export interface FhirIssue {
  code: AgentErrorCode;
  expression: string;
  message: string;
  /** FHIR `OperationOutcome.issue.code` (IssueType) when the check knows it better than the agent code does. */
  type?: string;
}

/** Base class for every error of the hospital agent; `status` is the HTTP status the API answers. */
export class AgentError extends Error {
  readonly code: AgentErrorCode;
  readonly status: number;
  /** Extra machine-readable detail safe to return to the API caller (never PHI). */
  readonly detail: Record<string, unknown> | undefined;
  /** Problems in a FHIR resource, each located by FHIRPath (never PHI): the API answers them as an OperationOutcome. */
  readonly issues: readonly FhirIssue[] | undefined;

  constructor(code: AgentErrorCode, message: string, options?: { cause?: unknown; detail?: Record<string, unknown>; issues?: readonly FhirIssue[] }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = AGENT_ERRORS[code].status;
    this.detail = options?.detail;
    this.issues = options?.issues;
    this.name = this.constructor.name;
  }
}

/** Consent refusals, a subset of {@link AgentErrorCode}. */
export type ConsentErrorCode = 'ERR_CONSENT_MISSING' | 'ERR_CONSENT_REVOKED' | 'ERR_CONSENT_EXPIRED' | 'ERR_CONSENT_SCOPE' | 'ERR_CONSENT_SENSITIVE';

/** Most causes {@link isNoSpace} follows. */
const MAX_CAUSE_DEPTH = 8;

/**
 * True when `err` (or an error it wraps as `cause`) says the disk is full:
 * `ENOSPC` or `EDQUOT` from node:fs, or LevelDB's IO error with the
 * operating system's message (classic-level reports `LEVEL_IO_ERROR` and the
 * text only).
 */
export function isNoSpace(err: unknown): boolean {
  let e = err as { code?: unknown; message?: unknown; cause?: unknown } | undefined;
  for (let depth = 0; e && depth < MAX_CAUSE_DEPTH; depth += 1) {
    if (e.code === 'ENOSPC' || e.code === 'EDQUOT') return true;
    if (typeof e.message === 'string' && /No space left on device|Disk quota exceeded/.test(e.message)) return true;
    e = e.cause as typeof e;
  }
  return false;
}
