import type { AbortCode } from './constants.ts';

/** WebSocket close code a protocol violation earns: malformed (1002), policy (1008), too big (1009). */
export type ProtocolCloseCode = 1002 | 1008 | 1009;

/** What the registry says about one error code. */
export interface RelayErrorInfo {
  /** One line for operators and agent developers (shown in the table of docs/relay.md). */
  readonly description: string;
  /** For a protocol violation: the WebSocket close code the connection that sent the frame is closed with (unless the raiser says otherwise). */
  readonly closeCode?: ProtocolCloseCode;
  /** For an error answered over HTTP: its status. */
  readonly status?: number;
}

/**
 * Error codes of the relay, its wire protocol and its client, with a
 * one-line description and, where meaningful, the WebSocket close code or
 * HTTP status that goes with them (docs/relay.md lists them all; a test checks
 * it does).
 */
export const RELAY_ERRORS = {
  ERR_PROTOCOL_TRUNCATED: { closeCode: 1002, description: 'A frame ended before one of its fields (shorter than its prefix, peer, length or code).' },
  ERR_PROTOCOL_VERSION: { closeCode: 1002, description: 'The frame carries a protocol version this side does not speak.' },
  ERR_PROTOCOL_KIND: { closeCode: 1002, description: 'The frame kind byte names no known frame.' },
  ERR_PROTOCOL_TOO_LARGE: { closeCode: 1009, description: 'A frame, its metadata, a notice body or a message exceeds the configured limit.' },
  ERR_PROTOCOL_BAD_ID: {
    closeCode: 1002,
    description: 'A transfer id is 0, or (1008) a sender used an id at or above 2^31, which the relay reserves for delivered transfers.',
  },
  ERR_PROTOCOL_BAD_PEER: { closeCode: 1002, description: 'The peer field is not a hospital id or runs past the frame.' },
  ERR_PROTOCOL_BAD_LENGTH: { closeCode: 1002, description: 'A frame has the wrong length for its kind, an empty DATA, or (1008) a credit outside 1..256 MiB.' },
  ERR_PROTOCOL_BAD_CODE: { closeCode: 1002, description: 'An ABORT carries an unknown abort code.' },
  ERR_PROTOCOL_BAD_NOTICE: { closeCode: 1002, description: 'A NOTICE has an unknown type or a body that is not a JSON object.' },
  ERR_PROTOCOL_BAD_DOCUMENT: { closeCode: 1002, description: 'A DOCUMENT frame names an unknown document type or carries no document.' },
  ERR_PROTOCOL_UNKNOWN_TRANSFER: { closeCode: 1008, description: 'A frame names a transfer id never used on this connection.' },
  ERR_PROTOCOL_DUPLICATE_TRANSFER: { closeCode: 1008, description: 'An OPEN reuses the id of a transfer still open.' },
  ERR_PROTOCOL_CREDIT_EXCEEDED: {
    closeCode: 1008,
    description: 'A sender sent more DATA than its credit, or a receiver granted more than 256 MiB outstanding.',
  },
  ERR_PROTOCOL_UNEXPECTED: {
    closeCode: 1008,
    description: 'A frame not allowed here: text frames, DATA after END, a second END, a NOTICE or DOCUMENT from an agent.',
  },
  ERR_RELAY_TRANSFER_ABORTED: { description: 'A transfer ended without completing; its `reason` is the wire abort code both ends see.' },
  ERR_RELAY_NOT_CONNECTED: { description: 'The client is not connected to the relay right now; retry once it is.' },
  ERR_RELAY_CONNECTION_LOST: { description: 'The connection to the relay closed while a transfer or request was under way.' },
  ERR_RELAY_REFUSED: { description: 'The relay refused the connection (the HTTP status of the refused upgrade is in the message) or was unreachable.' },
  ERR_RELAY_CLOSED: { description: 'The client was closed by its owner.' },
  ERR_RELAY_UNDELIVERABLE: { description: 'A routed message could not be delivered (the recipient is not connected anywhere, or a relay node failed).' },
  ERR_RELAY_USAGE_INVALID: { description: 'A usage statement failed verification (signature, relay certificate or its fields).' },
  ERR_RELAY_CONFIG: { description: 'The relay configuration is invalid; the message names each bad key.' },
  ERR_RELAY_ADMIN_NOT_FOUND: { status: 404, description: 'No such admin endpoint.' },
  ERR_RELAY_ISSUER_NOT_FOUND: {
    status: 404,
    description: 'The certificate listener has no such issuer, key revocation list or file (or no issuer directory yet).',
  },
  ERR_PATIENT_CREDENTIAL_MALFORMED: {
    status: 400,
    description: 'A patient connection carries no channel credential, or one that is not a well-formed credential JWS.',
  },
  ERR_PATIENT_CREDENTIAL_UNTRUSTED: {
    status: 401,
    description: "The patient credential's certificate is not a current, unrevoked hospital agent certificate of the federation, or names another hospital.",
  },
  ERR_PATIENT_CREDENTIAL_SIGNATURE: { status: 401, description: 'The patient credential does not verify with the certificate it carries (forged or altered).' },
  ERR_PATIENT_CREDENTIAL_EXPIRED: {
    status: 401,
    description: 'The patient credential has expired, is not yet valid, or claims a lifetime longer than allowed.',
  },
  ERR_PATIENT_POP: { status: 401, description: "The patient connection's proof of possession of the device key is missing, stale or does not verify." },
  ERR_PATIENT_HOSPITAL_OFFLINE: { status: 503, description: "The patient's hospital has no patient channel open to this relay node right now; retry later." },
} as const satisfies Record<string, RelayErrorInfo>;

/** A documented relay error code. */
export type RelayErrorCode = keyof typeof RELAY_ERRORS;

/** The codes of protocol violations: those with a WebSocket close code. */
export type ProtocolErrorCode = { [K in RelayErrorCode]: (typeof RELAY_ERRORS)[K] extends { closeCode: number } ? K : never }[RelayErrorCode];

/** Base class for every relay error; `code` is stable and documented. */
export class RelayError extends Error {
  readonly code: RelayErrorCode;

  constructor(code: RelayErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = this.constructor.name;
  }
}

/** A frame broke the protocol; the connection that sent it is closed with `closeCode` (by default the registry's). */
export class ProtocolError extends RelayError {
  declare readonly code: ProtocolErrorCode;
  readonly closeCode: ProtocolCloseCode;

  constructor(code: ProtocolErrorCode, message: string, closeCode: ProtocolCloseCode = RELAY_ERRORS[code].closeCode) {
    super(code, message);
    this.closeCode = closeCode;
  }
}

/** A transfer ended without completing; `reason` is the wire abort code both ends see. */
export class TransferAbortedError extends RelayError {
  declare readonly code: 'ERR_RELAY_TRANSFER_ABORTED';
  readonly reason: AbortCode;
  /** True when this side aborted it (cancel/destroy), false when the relay or peer did. */
  readonly local: boolean;

  constructor(reason: AbortCode, detail: string, local = false) {
    super('ERR_RELAY_TRANSFER_ABORTED', `transfer aborted: ${reason}${detail ? ` (${detail})` : ''}`);
    this.reason = reason;
    this.local = local;
  }
}
