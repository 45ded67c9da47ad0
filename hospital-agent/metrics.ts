import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Prometheus metrics of one agent (names prefixed `hie_agent_`); labels never carry ids or PHI. */
export class AgentMetrics {
  readonly registry = new Registry();
  readonly exchanges = new Counter({
    name: 'hie_agent_exchanges_total',
    help: 'Exchanges finished, by direction and outcome',
    labelNames: ['direction', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly bytes = new Counter({
    name: 'hie_agent_exchange_bytes_total',
    help: 'Payload bytes of finished exchanges, by direction',
    labelNames: ['direction'] as const,
    registers: [this.registry],
  });
  readonly retries = new Counter({
    name: 'hie_agent_send_retries_total',
    help: 'Send attempts put back in the queue (recipient offline, relay lost, no receipt yet)',
    registers: [this.registry],
  });
  readonly refused = new Counter({
    name: 'hie_agent_inbound_refused_total',
    help: 'Inbound envelopes refused, by error code',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });
  readonly authFailures = new Counter({
    name: 'hie_agent_api_auth_failures_total',
    help: 'Failed API authentications, by outcome: unauthorized (401), tarpit (429 after the delay), shed (429 at once, connection closed)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly relayConnected = new Gauge({ name: 'hie_agent_relay_connected', help: '1 while connected to a relay', registers: [this.registry] });
  readonly outboxQueued = new Gauge({
    name: 'hie_agent_outbox_unfinished',
    help: 'Outgoing exchanges not yet delivered or failed',
    registers: [this.registry],
  });
  readonly ledgerSeq = new Gauge({
    name: 'hie_agent_ledger_head_seq',
    help: "Sequence number of this hospital's newest ledger entry",
    registers: [this.registry],
  });
  readonly batchSize = new Histogram({
    name: 'hie_agent_batch_exchanges',
    help: 'Small exchanges sent per batch envelope (batches grow while every send slot is busy)',
    buckets: [1, 2, 4, 8, 16, 32, 64],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'hie_agent_' });
  }

  /** Counts one finished exchange. */
  exchange(direction: 'in' | 'out', outcome: 'delivered' | 'failed' | 'cancelled', bytes: number): void {
    this.exchanges.inc({ direction, outcome });
    if (outcome === 'delivered') this.bytes.inc({ direction }, bytes);
  }
}
