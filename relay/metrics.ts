import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';

/** The relay's Prometheus metrics, on their own registry (prefix hie_relay_). */
export class RelayMetrics {
  readonly registry = new Registry();
  readonly connections = new Gauge({ name: 'hie_relay_connections', help: 'Agent connections open', registers: [this.registry] });
  readonly connectionsRefused = new Counter({
    name: 'hie_relay_connections_refused_total',
    help: 'Connections refused before the WebSocket handshake, by reason (tls, per-address, certificate, capacity, ...)',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly transfersActive = new Gauge({ name: 'hie_relay_transfers_active', help: 'Transfers in flight', registers: [this.registry] });
  readonly transfersCompleted = new Counter({
    name: 'hie_relay_transfers_completed_total',
    help: 'Transfers completed (END forwarded)',
    registers: [this.registry],
  });
  readonly transfersAborted = new Counter({
    name: 'hie_relay_transfers_aborted_total',
    help: 'Transfers aborted, by reason',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly bytesIn = new Counter({ name: 'hie_relay_bytes_in_total', help: 'Transfer payload bytes received from senders', registers: [this.registry] });
  readonly bytesOut = new Counter({ name: 'hie_relay_bytes_out_total', help: 'Transfer payload bytes written to recipients', registers: [this.registry] });
  readonly messages = new Counter({
    name: 'hie_relay_messages_total',
    help: 'Routed messages, by outcome',
    labelNames: ['outcome'],
    registers: [this.registry],
  });
  readonly framesRejected = new Counter({
    name: 'hie_relay_frames_rejected_total',
    help: 'Frames that broke the protocol, by error code',
    labelNames: ['code'],
    registers: [this.registry],
  });
  readonly creditStalls = new Counter({
    name: 'hie_relay_credit_stalls_total',
    help: 'Times a sender used up all credit granted for a transfer',
    registers: [this.registry],
  });
  readonly backpressurePauses = new Counter({
    name: 'hie_relay_backpressure_pauses_total',
    help: 'Times a source socket was paused because its destination was behind',
    registers: [this.registry],
  });
  readonly handshakeTimeouts = new Counter({
    name: 'hie_relay_handshake_timeouts_total',
    help: 'Connections closed for not completing the TLS handshake within limits.handshakeTimeoutMs',
    registers: [this.registry],
  });
  readonly heartbeatTimeouts = new Counter({
    name: 'hie_relay_heartbeat_timeouts_total',
    help: 'Agents cut off for not answering a heartbeat ping',
    registers: [this.registry],
  });
  readonly writeTimeouts = new Counter({
    name: 'hie_relay_write_timeouts_total',
    help: 'Destinations that missed the write deadline',
    labelNames: [],
    registers: [this.registry],
  });
  readonly idleTimeouts = new Counter({
    name: 'hie_relay_idle_timeouts_total',
    help: 'Transfers aborted because no data moved for limits.transferIdleMs',
    registers: [this.registry],
  });
  readonly senderShareRefusals = new Counter({
    name: 'hie_relay_sender_share_refusals_total',
    help: "Opens refused because the sender already held limits.maxTransfersPerSender of the recipient's open transfers",
    registers: [this.registry],
  });
  readonly bufferedBytes = new Gauge({
    name: 'hie_relay_buffered_bytes',
    help: 'Bytes queued in the relay towards agents, not yet written',
    registers: [this.registry],
  });
  readonly crlNextUpdate = new Gauge({
    name: 'hie_relay_crl_next_update_seconds',
    help: 'Seconds until the CRL in force expires (negative: expired)',
    registers: [this.registry],
  });
  readonly certExpiry = new Gauge({ name: 'hie_relay_cert_expiry_seconds', help: 'Seconds until the relay certificate expires', registers: [this.registry] });
  readonly caExpiry = new Gauge({
    name: 'hie_relay_ca_expiry_seconds',
    help: "Seconds until the CA certificate that issued the relay's certificate expires",
    registers: [this.registry],
  });
  readonly crlAge = new Gauge({
    name: 'hie_relay_crl_age_seconds',
    help: 'Seconds since the CRL in force was issued (its thisUpdate)',
    registers: [this.registry],
  });
  readonly tlsRefused = new Counter({
    name: 'hie_relay_tls_refused_total',
    help: 'Client certificates or TLS handshakes refused, by reason (revoked, expired, not-yet-valid, unknown-ca, wrong-usage, not-agent, no-certificate, crl-expired, invalid, tls-error)',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly certificateReloads = new Counter({
    name: 'hie_relay_certificate_reloads_total',
    help: 'Renewed certificate, key or CA files seen on disk, by outcome (adopted, rejected)',
    labelNames: ['outcome'],
    registers: [this.registry],
  });
  readonly documentsSent = new Counter({
    name: 'hie_relay_documents_sent_total',
    help: 'Federation documents (CRL, member directory) handed to agents, by type',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });
  readonly documentsRefused = new Counter({
    name: 'hie_relay_documents_refused_total',
    help: 'Federation documents the relay would not distribute (invalid or older than the one it has), by type',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });
  readonly directorySequence = new Gauge({
    name: 'hie_relay_directory_sequence',
    help: 'Sequence of the member directory the relay distributes (0: none)',
    registers: [this.registry],
  });
  readonly usageStatements = new Counter({ name: 'hie_relay_usage_statements_total', help: 'Signed usage statements issued', registers: [this.registry] });
  readonly natsConnected = new Gauge({
    name: 'hie_relay_nats_connected',
    help: '1 while this node is connected to NATS, 0 otherwise (absent on a single node)',
    registers: [this.registry],
  });
  readonly natsForwardedMessages = new Counter({
    name: 'hie_relay_nats_forwarded_messages_total',
    help: 'NATS messages forwarded to (out) or received from (in) other relay nodes, by kind',
    labelNames: ['direction', 'kind'],
    registers: [this.registry],
  });
  readonly natsForwardedBytes = new Counter({
    name: 'hie_relay_nats_forwarded_bytes_total',
    help: 'Transfer payload bytes forwarded to (out) or received from (in) other relay nodes',
    labelNames: ['direction'],
    registers: [this.registry],
  });
  readonly presenceLookups = new Counter({
    name: 'hie_relay_presence_lookups_total',
    help: 'Presence lookups for agents on other nodes, by outcome (found: by a lookup, or for a message acked by the node the presence cache named; no-route, timeout, error)',
    labelNames: ['outcome'],
    registers: [this.registry],
  });
  readonly presenceCache = new Counter({
    name: 'hie_relay_presence_cache_total',
    help: 'Presence cache events: hit (a message sent straight to the node remembered), invalidated (an entry dropped: the agent left that node or the node did not answer), cleared (entries dropped on a NATS reconnect)',
    labelNames: ['event'],
    registers: [this.registry],
  });
  readonly natsCreditHeld = new Counter({
    name: 'hie_relay_nats_credit_held_total',
    help: 'Times credit for a cross-node transfer was held back because the NATS window was full',
    registers: [this.registry],
  });

  constructor() {
    // Process and Node.js runtime metrics (RSS, heap, event-loop lag, GC) under the same prefix.
    collectDefaultMetrics({ register: this.registry, prefix: 'hie_relay_' });
  }
}
