import express, { type Express } from 'express';
import helmet from 'helmet';
import type { RelayErrorCode } from './errors.ts';
import type { RelayMetrics } from './metrics.ts';
import type { Router } from './router.ts';

/** What the admin endpoints read. */
export interface AdminState {
  metrics: RelayMetrics;
  router: Router;
  ready: () => boolean;
  /** Refreshes gauges that are computed on scrape. */
  refresh: () => void;
  /** Certificate and CRL health: `degraded` with reasons well before either lapses. */
  health?: () => { status: 'ok' | 'degraded'; reasons: string[] };
  /** The CRL and member directory the relay hands to agents (null: none). */
  federation?: () => Record<string, unknown>;
}

/** The operator HTTP app: /healthz, /readyz, /metrics, /v1/agents, /v1/federation. */
export function adminApp(state: AdminState): Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(helmet());
  app.get('/healthz', (_req, res) => {
    // Still 200 when degraded: the relay serves; the body says what needs an operator soon.
    const h = state.health?.();
    res.json(h && h.status !== 'ok' ? { status: h.status, reasons: h.reasons } : { status: 'ok' });
  });
  app.get('/readyz', (_req, res) => {
    const ready = state.ready();
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not-ready' });
  });
  app.get('/metrics', async (_req, res) => {
    state.refresh();
    res.type(state.metrics.registry.contentType).send(await state.metrics.registry.metrics());
  });
  app.get('/v1/agents', (_req, res) => {
    res.json({ agents: state.router.list() });
  });
  app.get('/v1/federation', (_req, res) => {
    res.json(state.federation?.() ?? { crl: null, directory: null });
  });
  app.use((_req, res) => {
    res.status(404).json({ error: 'not found', code: 'ERR_RELAY_ADMIN_NOT_FOUND' satisfies RelayErrorCode });
  });
  return app;
}
