/** The agent-side relay client: connection, transfers as streams, messages, transports. */
export {
  RelayClient,
  RELAY_AGENT_PATH,
  DEFAULT_SEND_HIGH_WATER_MARK,
  DEFAULT_CHUNK_SIZE,
  DEFAULT_RENEW_MAX_WAIT_MS,
  RENEWAL_CLOSE_REASON,
  type RelayClientOptions,
  type RelayClientEvents,
  type RelayMessage,
} from './client.ts';
export { OutboundTransfer, DEFAULT_OUTBOUND_HIGH_WATER_MARK } from './outbound.ts';
export { InboundTransfer, DEFAULT_INBOUND_IDLE_MS } from './inbound.ts';
export type { VerifiedUsage } from './link.ts';
export { backoffDelay, DEFAULT_BACKOFF_BASE_MS, DEFAULT_BACKOFF_MAX_MS, type BackoffOptions } from './backoff.ts';
export type { Transport, TransportEvents, TransportFactory } from './transport.ts';
export { wsTransport, DEFAULT_HANDSHAKE_TIMEOUT_MS, DEFAULT_CLIENT_PING_INTERVAL_MS } from './transport-ws.ts';
