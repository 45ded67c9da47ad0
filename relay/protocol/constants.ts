/** Wire version carried in the first byte of every frame. */
export const PROTOCOL_VERSION = 1;

/** Numeric frame kinds (second byte of every frame). */
export const FrameKind = {
  OPEN: 1,
  DATA: 2,
  END: 3,
  CREDIT: 4,
  ABORT: 5,
  MESSAGE: 6,
  NOTICE: 7,
  /** A federation document the relay hands an agent (revision 3): the CRL or the signed member directory. */
  DOCUMENT: 8,
} as const;

/** Bytes before any kind-specific field: version u8, kind u8, id u32. */
export const FRAME_PREFIX = 6;

/** Largest frame (whole WebSocket message) accepted by default: 1 MiB of data plus its prefix. */
export const DEFAULT_MAX_FRAME = 1024 * 1024 + FRAME_PREFIX;
/** Largest OPEN metadata or NOTICE body by default. */
export const DEFAULT_MAX_HEADER = 16 * 1024;
/** Largest routed MESSAGE body by default. */
export const DEFAULT_MAX_MESSAGE = 64 * 1024;
/** Transfers one connection may have open at once, in each direction. */
export const DEFAULT_MAX_OPEN_TRANSFERS = 64;
/** Credit a receiver grants per transfer (its window) unless configured otherwise. */
export const DEFAULT_WINDOW = 8 * 1024 * 1024;
/** Largest single CREDIT grant and largest outstanding credit per transfer. */
export const MAX_CREDIT = 256 * 1024 * 1024;
/** Longest abort reason, in UTF-8 bytes. */
export const MAX_REASON = 200;

/**
 * Sender-chosen transfer ids live below this bit; the relay numbers the
 * transfers it delivers at or above it, so one id names one transfer per
 * connection whichever direction it runs.
 */
export const DELIVERED_ID_BIT = 0x8000_0000;

/** Limits a codec instance enforces. */
export interface FrameLimits {
  maxFrame: number;
  maxHeader: number;
  maxMessage: number;
}

/** The default {@link FrameLimits}. */
export const DEFAULT_LIMITS: Readonly<FrameLimits> = Object.freeze({
  maxFrame: DEFAULT_MAX_FRAME,
  maxHeader: DEFAULT_MAX_HEADER,
  maxMessage: DEFAULT_MAX_MESSAGE,
});

/** Why a transfer was aborted, as carried on the wire (u16). */
export const ABORT_CODES = {
  'no-route': 1,
  'peer-gone': 2,
  'write-timeout': 3,
  'protocol-error': 4,
  cancelled: 5,
  'shutting-down': 6,
  'too-many-transfers': 7,
  rejected: 8,
  internal: 9,
  replaced: 10,
  /** No data moved on the transfer for the relay's (or the recipient's) idle deadline; the sender may retry. */
  'idle-timeout': 11,
} as const;

/** Name of an abort reason. */
export type AbortCode = keyof typeof ABORT_CODES;

/**
 * Revision of the protocol within {@link PROTOCOL_VERSION}. Revision 2 added the
 * `idle-timeout` abort code; revision 3 the DOCUMENT frame (CRL and member
 * directory from the relay; an agent below 3 is never sent one). Each side announces its revision (an agent in the
 * {@link REVISION_HEADER} upgrade request header, the relay as `revision` in its
 * `ready` notice; absent means 1), and nobody sends a peer an abort code its
 * revision does not know: an older decoder rejects unknown codes and would close
 * the connection.
 */
export const PROTOCOL_REVISION = 3;

/** The first revision that understands DOCUMENT frames. */
export const DOCUMENT_SINCE_REVISION = 3;

/** Upgrade request header in which an agent announces its {@link PROTOCOL_REVISION}. */
export const REVISION_HEADER = 'hie-protocol-revision';

/** Abort codes added after revision 1: the revision that introduced each, and the older code a peer below it gets instead. */
const NEWER_ABORT_CODES: Partial<Record<AbortCode, { since: number; fallback: AbortCode }>> = {
  // Both are retryable for a sender; write-timeout is the nearest older meaning (a deadline passed).
  'idle-timeout': { since: 2, fallback: 'write-timeout' },
};

/** The abort code to send a peer of revision `peerRevision` for `code`. */
export function abortCodeFor(code: AbortCode, peerRevision: number): AbortCode {
  const newer = NEWER_ABORT_CODES[code];
  return newer && peerRevision < newer.since ? newer.fallback : code;
}

/** A peer's announced revision: a positive integer, or 1 when absent or malformed. */
export function parseRevision(value: unknown): number {
  const n = typeof value === 'string' ? Number(value) : value;
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 0xffff ? n : 1;
}

/** Relay notices (u8 type; JSON body). */
export const NOTICE_TYPES = {
  ready: 1,
  usage: 2,
  'shutting-down': 3,
  undeliverable: 4,
} as const;

/**
 * Federation documents a DOCUMENT frame carries (u8 type; the body is the
 * document's own bytes: the PEM X.509 CRL, the compact JWS of the directory).
 * Each is signed by the federation CA (or its directory key): the relay only
 * carries them, and agents verify before adopting.
 */
export const DOCUMENT_TYPES = {
  crl: 1,
  directory: 2,
} as const;

/** Name of a document type. */
export type DocumentType = keyof typeof DOCUMENT_TYPES;

/** Name of a notice type. */
export type NoticeType = keyof typeof NOTICE_TYPES;

/** WebSocket close codes the relay uses. */
export const CLOSE_CODES = {
  normal: 1000,
  goingAway: 1001,
  protocolError: 1002,
  policyViolation: 1008,
  tooBig: 1009,
  /** The agent's certificate was revoked while connected. */
  revoked: 4001,
  /** A newer connection of the same agent took over. */
  replaced: 4002,
  /** The peer did not drain its socket before the write deadline. */
  writeTimeout: 4003,
} as const;
