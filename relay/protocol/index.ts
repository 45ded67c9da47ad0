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
export {
  RELAY_ERRORS,
  RelayError,
  ProtocolError,
  TransferAbortedError,
  type RelayErrorCode,
  type RelayErrorInfo,
  type ProtocolErrorCode,
  type ProtocolCloseCode,
} from './errors.ts';
export { decodeFrame, encodeOpen, encodeData, encodeEnd, encodeCredit, encodeAbort, encodeMessage, encodeNotice, setFrameId, type Frame } from './codec.ts';
export { USAGE_STATEMENT_VERSION, usageStatementBytes, verifyUsageStatement, type UsageStatement, type SignedUsageStatement, type Fee } from './usage.ts';
export {
  RelayClient,
  RELAY_AGENT_PATH,
  DEFAULT_SEND_HIGH_WATER_MARK,
  DEFAULT_CHUNK_SIZE,
  OutboundTransfer,
  InboundTransfer,
  DEFAULT_OUTBOUND_HIGH_WATER_MARK,
  backoffDelay,
  DEFAULT_BACKOFF_BASE_MS,
  DEFAULT_BACKOFF_MAX_MS,
  wsTransport,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_CLIENT_PING_INTERVAL_MS,
  type RelayClientOptions,
  type RelayClientEvents,
  type RelayMessage,
  type VerifiedUsage,
  type BackoffOptions,
  type Transport,
  type TransportEvents,
  type TransportFactory,
} from './client/index.ts';
