/** Error codes of the relay protocol, client and server. */
export type RelayErrorCode =
  | 'ERR_PROTOCOL_TRUNCATED'
  | 'ERR_PROTOCOL_VERSION'
  | 'ERR_PROTOCOL_KIND'
  | 'ERR_PROTOCOL_TOO_LARGE'
  | 'ERR_PROTOCOL_BAD_ID'
  | 'ERR_PROTOCOL_BAD_PEER'
  | 'ERR_PROTOCOL_BAD_LENGTH'
  | 'ERR_PROTOCOL_BAD_CODE'
  | 'ERR_PROTOCOL_BAD_NOTICE'
  | 'ERR_PROTOCOL_UNKNOWN_TRANSFER'
  | 'ERR_PROTOCOL_DUPLICATE_TRANSFER'
  | 'ERR_PROTOCOL_TOO_MANY_TRANSFERS'
  | 'ERR_PROTOCOL_CREDIT_EXCEEDED'
  | 'ERR_PROTOCOL_UNEXPECTED'
  | 'ERR_RELAY_TRANSFER_ABORTED'
  | 'ERR_RELAY_NOT_CONNECTED'
  | 'ERR_RELAY_CONNECTION_LOST'
  | 'ERR_RELAY_REFUSED'
  | 'ERR_RELAY_CLOSED'
  | 'ERR_RELAY_UNDELIVERABLE'
  | 'ERR_RELAY_USAGE_INVALID'
  | 'ERR_RELAY_CONFIG';

/** Base class for every relay error; `code` is stable and documented. */
export class RelayError extends Error {
  readonly code: RelayErrorCode;

  constructor(code: RelayErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = this.constructor.name;
  }
}

/** WebSocket close code a protocol violation earns: malformed (1002), policy (1008), too big (1009). */
export type ProtocolCloseCode = 1002 | 1008 | 1009;

/** A frame broke the protocol; the connection that sent it is closed with `closeCode`. */
export class ProtocolError extends RelayError {
  readonly closeCode: ProtocolCloseCode;

  constructor(code: RelayErrorCode, message: string, closeCode: ProtocolCloseCode = 1002) {
    super(code, message);
    this.closeCode = closeCode;
  }
}

/** A transfer ended without completing; `reason` is the wire abort code both ends see. */
export class TransferAbortedError extends RelayError {
  readonly reason: import('./constants.ts').AbortCode;
  /** True when this side aborted it (cancel/destroy), false when the relay or peer did. */
  readonly local: boolean;

  constructor(reason: import('./constants.ts').AbortCode, detail: string, local = false) {
    super('ERR_RELAY_TRANSFER_ABORTED', `transfer aborted: ${reason}${detail ? ` (${detail})` : ''}`);
    this.reason = reason;
    this.local = local;
  }
}
