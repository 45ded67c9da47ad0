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
  readonly certExpiry = new Gauge({ name: 'hie_agent_cert_expiry_seconds', help: "Seconds until the agent's certificate expires", registers: [this.registry] });
  readonly caExpiry = new Gauge({
    name: 'hie_agent_ca_expiry_seconds',
    help: "Seconds until the CA certificate that issued the agent's certificate expires",
    registers: [this.registry],
  });
  readonly crlAge = new Gauge({
    name: 'hie_agent_crl_age_seconds',
    help: 'Seconds since the CRL in force was issued (its thisUpdate)',
    registers: [this.registry],
  });
  readonly crlNextUpdate = new Gauge({
    name: 'hie_agent_crl_next_update_seconds',
    help: 'Seconds until the CRL in force expires (negative: expired)',
    registers: [this.registry],
  });
  readonly certificateReloads = new Counter({
    name: 'hie_agent_certificate_reloads_total',
    help: 'Renewed certificate, key or CA files seen on disk, by outcome (adopted, rejected)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
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
  readonly fhirValidation = new Histogram({
    name: 'hie_agent_fhir_validation_seconds',
    help: 'Time from a submitted FHIR Bundle handed to validation to its answer (valid or not), its wait behind others included',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers: [this.registry],
  });
  /** Read when scraped: the validation threads running (limits.fhirValidationThreads; fewer once a thread keeps failing). */
  validationThreads: () => number = () => 0;
  readonly fhirValidationThreads: Gauge = new Gauge({
    name: 'hie_agent_fhir_validation_threads',
    help: 'Worker threads validating FHIR Bundles (0: on the main thread)',
    registers: [this.registry],
    collect: (): void => this.fhirValidationThreads.set(this.validationThreads()),
  });

  readonly documentsAdopted = new Counter({
    name: 'hie_agent_federation_documents_adopted_total',
    help: 'CRLs and member directories adopted (from the relay, the CRL file or the data directory), by type',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });
  readonly documentsRefused = new Counter({
    name: 'hie_agent_federation_documents_refused_total',
    help: 'CRLs and member directories refused, by type and reason (invalid: signature or format; older: not newer than the one in force; expired)',
    labelNames: ['type', 'reason'] as const,
    registers: [this.registry],
  });
  readonly crlNumber = new Gauge({ name: 'hie_agent_crl_number', help: 'CRL number of the CRL in force (0: none)', registers: [this.registry] });
  readonly directorySequence = new Gauge({
    name: 'hie_agent_directory_sequence',
    help: 'Sequence of the member directory in force (0: none published yet)',
    registers: [this.registry],
  });
  readonly certificateRevoked = new Gauge({
    name: 'hie_agent_certificate_revoked',
    help: "1 while this agent's own certificate is known to be revoked",
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
