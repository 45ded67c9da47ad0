/**
 * The relay node: mTLS WebSocket routing between agents with end-to-end
 * credit flow control, signed usage metering and an operator HTTP surface.
 */
export { startRelay, AGENT_PATH, type RunningRelay, type StartOptions } from './server.ts';
export {
  parseRelayConfig,
  loadRelayConfig,
  envVarFor,
  relayConfigLeaves,
  relayConfigSchema,
  ENV_PREFIX,
  DEFAULT_LISTEN_PORT,
  DEFAULT_ADMIN_HOST,
  DEFAULT_ADMIN_PORT,
  DEFAULT_HIGH_WATER_MARK,
  DEFAULT_WRITE_TIMEOUT_MS,
  DEFAULT_MAX_TRANSFERS_PER_SENDER,
  DEFAULT_TRANSFER_IDLE_MS,
  DEFAULT_SHUTDOWN_GRACE_MS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_CRL_POLL_MS,
  DEFAULT_DIRECTORY_POLL_MS,
  type RelayConfig,
  type RelayConfigInput,
} from './config.ts';
export { LocalRouter, type Router, type AgentPort, type AgentInfo } from './router.ts';
export { feeFor, signUsage, type Tariff } from './metering.ts';
export { RelayMetrics } from './metrics.ts';
export { ConfigError, RelayError, ProtocolError, TransferAbortedError, type RelayErrorCode } from './errors.ts';
export { RELAY_ERRORS, type RelayErrorInfo } from './protocol/errors.ts';
