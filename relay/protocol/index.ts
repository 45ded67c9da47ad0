/**
 * The wire protocol agents speak to the relay: frame constants and limits,
 * the one binary codec, errors, usage-statement verification, and the agent
 * side relay client.
 */
export {
  PROTOCOL_VERSION,
  FrameKind,
  FRAME_PREFIX,
  DEFAULT_MAX_FRAME,
  DEFAULT_MAX_HEADER,
  DEFAULT_MAX_MESSAGE,
  DEFAULT_MAX_OPEN_TRANSFERS,
  DEFAULT_WINDOW,
  DEFAULT_LIMITS,
  MAX_CREDIT,
  MAX_REASON,
  DELIVERED_ID_BIT,
  ABORT_CODES,
  NOTICE_TYPES,
  CLOSE_CODES,
  type AbortCode,
  type NoticeType,
  type FrameLimits,
} from './constants.ts';
export { RelayError, ProtocolError, TransferAbortedError, type RelayErrorCode, type ProtocolCloseCode } from './errors.ts';
export {
  decodeFrame,
  encodeOpen,
  encodeData,
  encodeEnd,
  encodeCredit,
  encodeAbort,
  encodeMessage,
  encodeNotice,
  setFrameId,
  type Frame,
} from './codec.ts';
export {
  USAGE_STATEMENT_VERSION,
  usageStatementBytes,
  verifyUsageStatement,
  type UsageStatement,
  type SignedUsageStatement,
  type Fee,
} from './usage.ts';
