/** The multi-node router: relay nodes routing through NATS core (no JetStream, nothing persisted). */
export { NatsRouter, connectNatsRouter, type NatsRouterConfig, type ConnectNatsRouterOptions } from './router.ts';
