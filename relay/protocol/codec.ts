import { isHospitalId } from '../../certs/index.ts';
import {
  ABORT_CODES,
  DEFAULT_LIMITS,
  FRAME_PREFIX,
  FrameKind,
  MAX_CREDIT,
  MAX_REASON,
  NOTICE_TYPES,
  DOCUMENT_TYPES,
  PROTOCOL_VERSION,
  type AbortCode,
  type DocumentType,
  type FrameLimits,
  type NoticeType,
} from './constants.ts';
import { ProtocolError, type ProtocolCloseCode, type ProtocolErrorCode } from './errors.ts';

/** A decoded frame. Buffers are views into the input, never copies. */
export type Frame =
  | { kind: 'open'; id: number; peer: string; meta: Buffer }
  | { kind: 'data'; id: number; payload: Buffer }
  | { kind: 'end'; id: number }
  | { kind: 'credit'; id: number; bytes: number }
  | { kind: 'abort'; id: number; code: AbortCode; reason: string }
  | { kind: 'message'; id: number; peer: string; body: Buffer }
  | { kind: 'notice'; id: number; type: NoticeType; body: Record<string, unknown> }
  | { kind: 'document'; id: number; type: DocumentType; body: Buffer };

const ABORT_BY_NUMBER = new Map<number, AbortCode>(Object.entries(ABORT_CODES).map(([k, v]) => [v, k as AbortCode]));
const DOCUMENT_BY_NUMBER = new Map<number, DocumentType>(Object.entries(DOCUMENT_TYPES).map(([k, v]) => [v, k as DocumentType]));
const NOTICE_BY_NUMBER = new Map<number, NoticeType>(Object.entries(NOTICE_TYPES).map(([k, v]) => [v, k as NoticeType]));

function header(kind: number, id: number, bodyLength: number): Buffer {
  if (!Number.isInteger(id) || id < 0 || id > 0xffff_ffff) throw new TypeError(`frame id must be a uint32, got ${id}`);
  const buf = Buffer.allocUnsafe(FRAME_PREFIX + bodyLength);
  buf[0] = PROTOCOL_VERSION;
  buf[1] = kind;
  buf.writeUInt32BE(id, 2);
  return buf;
}

function checkTransferId(id: number): void {
  if (!Number.isInteger(id) || id < 1 || id > 0xffff_ffff) throw new TypeError(`transfer id must be a uint32 > 0, got ${id}`);
}

function checkPeer(peer: string): Buffer {
  if (!isHospitalId(peer)) throw new TypeError(`peer must be a hospital id, got ${JSON.stringify(peer)}`);
  return Buffer.from(peer, 'latin1');
}

/** Encodes OPEN: a new transfer `id` to (sender side) or from (relay side) `peer`, with opaque metadata. */
export function encodeOpen(id: number, peer: string, meta: Uint8Array = Buffer.alloc(0), limits: FrameLimits = DEFAULT_LIMITS): Buffer {
  checkTransferId(id);
  const p = checkPeer(peer);
  if (meta.byteLength > limits.maxHeader) throw new TypeError(`open metadata is ${meta.byteLength} bytes, limit ${limits.maxHeader}`);
  const buf = header(FrameKind.OPEN, id, 1 + p.length + 2 + meta.byteLength);
  buf[FRAME_PREFIX] = p.length;
  p.copy(buf, FRAME_PREFIX + 1);
  buf.writeUInt16BE(meta.byteLength, FRAME_PREFIX + 1 + p.length);
  buf.set(meta, FRAME_PREFIX + 3 + p.length);
  return buf;
}

/** Encodes DATA: one chunk of transfer `id` (copied once into the frame). */
export function encodeData(id: number, payload: Uint8Array, limits: FrameLimits = DEFAULT_LIMITS): Buffer {
  checkTransferId(id);
  if (payload.byteLength === 0) throw new TypeError('data chunk must not be empty');
  if (payload.byteLength + FRAME_PREFIX > limits.maxFrame) throw new TypeError(`data chunk of ${payload.byteLength} bytes exceeds maxFrame ${limits.maxFrame}`);
  const buf = header(FrameKind.DATA, id, payload.byteLength);
  buf.set(payload, FRAME_PREFIX);
  return buf;
}

/** Encodes END: transfer `id` is complete. */
export function encodeEnd(id: number): Buffer {
  checkTransferId(id);
  return header(FrameKind.END, id, 0);
}

/** Encodes CREDIT: the receiver of transfer `id` accepts `bytes` more. */
export function encodeCredit(id: number, bytes: number): Buffer {
  checkTransferId(id);
  if (!Number.isInteger(bytes) || bytes < 1 || bytes > MAX_CREDIT) throw new TypeError(`credit must be an integer in 1..${MAX_CREDIT}, got ${bytes}`);
  const buf = header(FrameKind.CREDIT, id, 4);
  buf.writeUInt32BE(bytes, FRAME_PREFIX);
  return buf;
}

/** Encodes ABORT with a wire code and a short reason (truncated to {@link MAX_REASON} bytes). */
export function encodeAbort(id: number, code: AbortCode, reason = ''): Buffer {
  checkTransferId(id);
  const n = ABORT_CODES[code];
  if (n === undefined) throw new TypeError(`unknown abort code ${String(code)}`);
  let r = Buffer.from(reason, 'utf8');
  if (r.length > MAX_REASON)
    r = Buffer.from(
      r
        .subarray(0, MAX_REASON)
        .toString('utf8')
        .replace(/\uFFFD+$/, ''),
      'utf8',
    ).subarray(0, MAX_REASON);
  const buf = header(FrameKind.ABORT, id, 3 + r.length);
  buf.writeUInt16BE(n, FRAME_PREFIX);
  buf[FRAME_PREFIX + 2] = r.length;
  r.copy(buf, FRAME_PREFIX + 3);
  return buf;
}

/** Encodes MESSAGE: a small routed message to (sender side) or from (relay side) `peer`. */
export function encodeMessage(id: number, peer: string, body: Uint8Array, limits: FrameLimits = DEFAULT_LIMITS): Buffer {
  const p = checkPeer(peer);
  if (body.byteLength > limits.maxMessage) throw new TypeError(`message of ${body.byteLength} bytes exceeds maxMessage ${limits.maxMessage}`);
  const buf = header(FrameKind.MESSAGE, id, 1 + p.length + body.byteLength);
  buf[FRAME_PREFIX] = p.length;
  p.copy(buf, FRAME_PREFIX + 1);
  buf.set(body, FRAME_PREFIX + 1 + p.length);
  return buf;
}

/** Encodes NOTICE: a relay notice with a JSON object body. */
export function encodeNotice(type: NoticeType, body: Record<string, unknown>, limits: FrameLimits = DEFAULT_LIMITS): Buffer {
  const n = NOTICE_TYPES[type];
  if (n === undefined) throw new TypeError(`unknown notice type ${String(type)}`);
  const json = Buffer.from(JSON.stringify(body), 'utf8');
  if (json.length > limits.maxHeader) throw new TypeError(`notice body of ${json.length} bytes exceeds maxHeader ${limits.maxHeader}`);
  const buf = header(FrameKind.NOTICE, 0, 1 + json.length);
  buf[FRAME_PREFIX] = n;
  json.copy(buf, FRAME_PREFIX + 1);
  return buf;
}

/** Encodes DOCUMENT: a federation document (its exact bytes), bounded by maxFrame only. */
export function encodeDocument(type: DocumentType, body: Uint8Array, limits: FrameLimits = DEFAULT_LIMITS): Buffer {
  const n = DOCUMENT_TYPES[type];
  if (n === undefined) throw new TypeError(`unknown document type ${String(type)}`);
  if (body.byteLength === 0) throw new TypeError('document must not be empty');
  if (FRAME_PREFIX + 1 + body.byteLength > limits.maxFrame) throw new TypeError(`document of ${body.byteLength} bytes exceeds maxFrame ${limits.maxFrame}`);
  const buf = header(FrameKind.DOCUMENT, 0, 1 + body.byteLength);
  buf[FRAME_PREFIX] = n;
  buf.set(body, FRAME_PREFIX + 1);
  return buf;
}

function fail(code: ProtocolErrorCode, message: string, closeCode?: ProtocolCloseCode): never {
  throw new ProtocolError(code, message, closeCode);
}

function readPeer(buf: Buffer, at: number): { peer: string; next: number } {
  if (buf.length < at + 1) fail('ERR_PROTOCOL_TRUNCATED', 'frame truncated before peer length');
  const len = buf[at] as number;
  if (len < 2 || len > 63 || buf.length < at + 1 + len) fail('ERR_PROTOCOL_BAD_PEER', `peer length ${len} out of range or past the frame`);
  const peer = buf.toString('latin1', at + 1, at + 1 + len);
  if (!isHospitalId(peer)) fail('ERR_PROTOCOL_BAD_PEER', 'peer is not a hospital id');
  return { peer, next: at + 1 + len };
}

function transferId(buf: Buffer): number {
  const id = buf.readUInt32BE(2);
  if (id === 0) fail('ERR_PROTOCOL_BAD_ID', 'transfer id 0 is reserved');
  return id;
}

function exact(buf: Buffer, length: number, what: string): void {
  if (buf.length !== length) fail('ERR_PROTOCOL_BAD_LENGTH', `${what} frame must be ${length} bytes, got ${buf.length}`);
}

/**
 * Decodes one frame. Every length, id and code is checked against the frame
 * and `limits`; anything malformed throws a {@link ProtocolError} whose
 * `closeCode` says how to close the connection that sent it.
 */
export function decodeFrame(buf: Buffer, limits: FrameLimits = DEFAULT_LIMITS): Frame {
  if (buf.length > limits.maxFrame) fail('ERR_PROTOCOL_TOO_LARGE', `frame of ${buf.length} bytes exceeds maxFrame ${limits.maxFrame}`, 1009);
  if (buf.length < FRAME_PREFIX) fail('ERR_PROTOCOL_TRUNCATED', `frame of ${buf.length} bytes is shorter than its prefix`);
  if (buf[0] !== PROTOCOL_VERSION) fail('ERR_PROTOCOL_VERSION', `unsupported protocol version ${buf[0]}`);
  const kind = buf[1];
  switch (kind) {
    case FrameKind.DATA: {
      const id = transferId(buf);
      if (buf.length === FRAME_PREFIX) fail('ERR_PROTOCOL_BAD_LENGTH', 'empty data frame');
      return { kind: 'data', id, payload: buf.subarray(FRAME_PREFIX) };
    }
    case FrameKind.OPEN: {
      const id = transferId(buf);
      const { peer, next } = readPeer(buf, FRAME_PREFIX);
      if (buf.length < next + 2) fail('ERR_PROTOCOL_TRUNCATED', 'open frame truncated before metadata length');
      const metaLen = buf.readUInt16BE(next);
      if (metaLen > limits.maxHeader) fail('ERR_PROTOCOL_TOO_LARGE', `open metadata of ${metaLen} bytes exceeds maxHeader ${limits.maxHeader}`, 1009);
      exact(buf, next + 2 + metaLen, 'open');
      return { kind: 'open', id, peer, meta: buf.subarray(next + 2) };
    }
    case FrameKind.END: {
      const id = transferId(buf);
      exact(buf, FRAME_PREFIX, 'end');
      return { kind: 'end', id };
    }
    case FrameKind.CREDIT: {
      const id = transferId(buf);
      exact(buf, FRAME_PREFIX + 4, 'credit');
      const bytes = buf.readUInt32BE(FRAME_PREFIX);
      if (bytes < 1 || bytes > MAX_CREDIT) fail('ERR_PROTOCOL_BAD_LENGTH', `credit ${bytes} out of range 1..${MAX_CREDIT}`, 1008);
      return { kind: 'credit', id, bytes };
    }
    case FrameKind.ABORT: {
      const id = transferId(buf);
      if (buf.length < FRAME_PREFIX + 3) fail('ERR_PROTOCOL_TRUNCATED', 'abort frame truncated');
      const n = buf.readUInt16BE(FRAME_PREFIX);
      const code = ABORT_BY_NUMBER.get(n);
      if (!code) fail('ERR_PROTOCOL_BAD_CODE', `unknown abort code ${n}`);
      const len = buf[FRAME_PREFIX + 2] as number;
      if (len > MAX_REASON) fail('ERR_PROTOCOL_BAD_LENGTH', `abort reason of ${len} bytes exceeds ${MAX_REASON}`);
      exact(buf, FRAME_PREFIX + 3 + len, 'abort');
      return { kind: 'abort', id, code, reason: buf.toString('utf8', FRAME_PREFIX + 3) };
    }
    case FrameKind.MESSAGE: {
      const id = buf.readUInt32BE(2);
      const { peer, next } = readPeer(buf, FRAME_PREFIX);
      const len = buf.length - next;
      if (len > limits.maxMessage) fail('ERR_PROTOCOL_TOO_LARGE', `message of ${len} bytes exceeds maxMessage ${limits.maxMessage}`, 1009);
      return { kind: 'message', id, peer, body: buf.subarray(next) };
    }
    case FrameKind.NOTICE: {
      if (buf.length < FRAME_PREFIX + 1) fail('ERR_PROTOCOL_TRUNCATED', 'notice frame truncated');
      const type = NOTICE_BY_NUMBER.get(buf[FRAME_PREFIX] as number);
      if (!type) fail('ERR_PROTOCOL_BAD_NOTICE', `unknown notice type ${buf[FRAME_PREFIX]}`);
      const len = buf.length - FRAME_PREFIX - 1;
      if (len > limits.maxHeader) fail('ERR_PROTOCOL_TOO_LARGE', `notice body of ${len} bytes exceeds maxHeader ${limits.maxHeader}`, 1009);
      let body: unknown;
      try {
        body = JSON.parse(buf.toString('utf8', FRAME_PREFIX + 1));
      } catch {
        fail('ERR_PROTOCOL_BAD_NOTICE', 'notice body is not JSON');
      }
      if (typeof body !== 'object' || body === null || Array.isArray(body)) fail('ERR_PROTOCOL_BAD_NOTICE', 'notice body is not a JSON object');
      return { kind: 'notice', id: buf.readUInt32BE(2), type, body: body as Record<string, unknown> };
    }
    case FrameKind.DOCUMENT: {
      if (buf.length < FRAME_PREFIX + 2) fail('ERR_PROTOCOL_TRUNCATED', 'document frame truncated');
      const type = DOCUMENT_BY_NUMBER.get(buf[FRAME_PREFIX] as number);
      if (!type) fail('ERR_PROTOCOL_BAD_DOCUMENT', `unknown document type ${buf[FRAME_PREFIX]}`);
      if (buf.readUInt32BE(2) !== 0) fail('ERR_PROTOCOL_BAD_ID', 'a document frame carries id 0');
      return { kind: 'document', id: 0, type, body: buf.subarray(FRAME_PREFIX + 1) };
    }
    default:
      return fail('ERR_PROTOCOL_KIND', `unknown frame kind ${kind}`);
  }
}

/** Rewrites the id of an encoded frame in place (the relay forwards buffers without copying payloads). */
export function setFrameId(frame: Buffer, id: number): void {
  frame.writeUInt32BE(id, 2);
}
