import express, { type Router } from 'express';
import { verifyLedger, withSnapshotSource, type Ledger, type Replicator, type Trust } from '../../../ledger/index.ts';
import { monthPeriod, settlementStatement } from '../../engine/payments.ts';
import { DEFAULT_MAX_EXCHANGE_AGE_MS } from '../../engine/index.ts';
import { AgentError } from '../../errors.ts';

/**
 * How long (s) an exchange may go without a receipt or exchange.failed before
 * verification reports it unanswered, unless the request says otherwise: as
 * long as the engine retries (24 h) and an hour for the last attempt.
 */
export const AGENT_VERIFY_GRACE_SECONDS = DEFAULT_MAX_EXCHANGE_AGE_MS / 1000 + 3600;

/** /v1/ledger: status (feeds, heads, replication, findings), verification, settlement. */
export function ledgerRoutes(
  ledger: Ledger,
  replicator: Replicator,
  trust: () => Trust,
  self: string,
  options: {
    /** For one statement: whether a received exchange answers a records request of this hospital (its sender bills a release fee). */
    billable?: () => (exchangeId: string, from: string) => Promise<boolean>;
  } = {},
): Router {
  const r = express.Router();
  r.get('/ledger/status', async (_req, res) => {
    const status = await ledger.status();
    const replication = replicator.status();
    res.json({ ...status, replication });
  });
  r.get('/ledger/verify', async (req, res) => {
    const grace = req.query['grace'] === undefined ? undefined : Number(req.query['grace']);
    if (grace !== undefined && (!Number.isInteger(grace) || grace < 0)) throw new AgentError('ERR_BAD_REQUEST', 'grace must be a whole number of seconds');
    // One snapshot: the agent keeps appending and replicating while this reads.
    const result = await withSnapshotSource(ledger._store, (source) =>
      verifyLedger(source, { trust: trust(), graceSeconds: grace ?? AGENT_VERIFY_GRACE_SECONDS }),
    );
    res.json(result);
  });
  r.get('/ledger/settlement', async (req, res) => {
    let period: { start: Date; end: Date };
    try {
      period = monthPeriod(String(req.query['period'] ?? new Date().toISOString().slice(0, 7)));
    } catch {
      throw new AgentError('ERR_BAD_REQUEST', 'period must be YYYY-MM');
    }
    res.json(await settlementStatement(ledger, self, period.start, period.end, options.billable ? { billable: options.billable() } : {}));
  });
  return r;
}
