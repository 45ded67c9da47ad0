import express, { type Router } from 'express';
import {
  buildProof,
  ID_PATTERN,
  LedgerError,
  verifyLedger,
  verifyProof,
  withSnapshotSource,
  type Ledger,
  type Replicator,
  type Trust,
  type Witness,
  type WitnessPolicy,
} from '../../../ledger/index.ts';
import { monthPeriod, settlementStatement } from '../../engine/payments.ts';
import { DEFAULT_MAX_EXCHANGE_AGE_MS } from '../../engine/index.ts';
import { AgentError } from '../../errors.ts';

/**
 * How long (s) an exchange may go without a receipt or exchange.failed before
 * verification reports it unanswered, unless the request says otherwise: as
 * long as the engine retries (24 h) and an hour for the last attempt.
 */
export const AGENT_VERIFY_GRACE_SECONDS = DEFAULT_MAX_EXCHANGE_AGE_MS / 1000 + 3600;

/** /v1/ledger: status (feeds, heads, replication, findings), verification, settlement, proofs for auditors. */
export function ledgerRoutes(
  ledger: Ledger,
  replicator: Replicator,
  trust: () => Trust,
  self: string,
  options: {
    /** This agent as a witness, and when a checkpoint counts as witnessed (status evidence, proofs). */
    witness?: Witness;
    policy?: WitnessPolicy;
    /** For one statement: whether a received exchange answers a records request of this hospital (its sender bills a release fee). */
    billable?: () => (exchangeId: string, from: string) => Promise<boolean>;
  } = {},
): Router {
  const r = express.Router();
  r.get('/ledger/status', async (_req, res) => {
    const status = await ledger.status();
    const replication = replicator.status();
    res.json({ ...status, replication, ...(options.witness ? { witnessEvidence: await options.witness.evidence() } : {}) });
  });
  // The proof file `hie-ledger prove` writes (docs/verification.md); the verdict under this agent's policy rides in headers.
  r.get('/ledger/proofs/:kind/:id', async (req, res) => {
    const { kind, id } = req.params as { kind: string; id: string };
    if (kind !== 'exchange' && kind !== 'consent') throw new AgentError('ERR_NOT_FOUND', `no proofs of ${kind}s (exchange or consent)`);
    if (!ID_PATTERN.test(id)) throw new AgentError('ERR_BAD_REQUEST', `${kind} id is malformed`);
    let built;
    try {
      built = await buildProof(ledger._store, kind === 'exchange' ? { exchange: id } : { consent: id });
    } catch (err) {
      if (err instanceof LedgerError && err.code === 'ERR_LEDGER_SEQ') throw new AgentError('ERR_NOT_FOUND', `this ledger holds no entry of ${kind} ${id}`);
      throw err;
    }
    if (built.file.entries.length === 0) throw new AgentError('ERR_NOT_FOUND', `no signed checkpoint covers the entries of ${kind} ${id} yet`);
    const verdict = await verifyProof(built.file, trust(), options.policy);
    res.setHeader('Hie-Proof-Verified', verdict.ok ? 'true' : 'false');
    if (built.unproved.length > 0) res.setHeader('Hie-Proof-Unproved', built.unproved.join(', '));
    res.setHeader('Content-Disposition', `attachment; filename="proof-${kind}-${id}.json"`);
    res.json(built.file);
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
