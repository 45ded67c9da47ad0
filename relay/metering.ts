import { sign, type KeyObject } from 'node:crypto';
import { USAGE_STATEMENT_VERSION, usageStatementBytes, type Fee, type SignedUsageStatement, type UsageStatement } from './protocol/usage.ts';

/**
 * Operator tariff: integer minor units per transfer and per GiB (pro rata,
 * rounded up), and the federation's release fee (requester to provider, for
 * records released in answer to a request; 0 or absent: none).
 */
export interface Tariff {
  currency: string;
  perTransfer: number;
  perGiB: number;
  releaseFee?: number;
}

const GIB = 1n << 30n;

/** The fee for `bytes` under `tariff`, in integer minor units (never floats). */
export function feeFor(bytes: number, tariff: Tariff): Fee {
  const variable = (BigInt(bytes) * BigInt(tariff.perGiB) + GIB - 1n) / GIB;
  const amount = BigInt(tariff.perTransfer) + variable;
  if (amount > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError('fee exceeds safe integer range');
  return { amount: Number(amount), currency: tariff.currency };
}

/** Builds and signs (RSA-SHA256 over JCS bytes) the usage statement of one completed transfer. */
export function signUsage(
  input: { transferId: string; from: string; to: string; bytes: number; completedAt: Date },
  tariff: Tariff,
  key: KeyObject,
  certificatePem: string,
): SignedUsageStatement {
  const statement: UsageStatement = {
    v: USAGE_STATEMENT_VERSION,
    transferId: input.transferId,
    from: input.from,
    to: input.to,
    bytes: input.bytes,
    completedAt: input.completedAt.toISOString(),
    fee: feeFor(input.bytes, tariff),
    // Signed with the statement, so the agents charge the release fee the operator set, not one they chose.
    ...(tariff.releaseFee ? { releaseFee: { amount: tariff.releaseFee, currency: tariff.currency } } : {}),
  };
  const signature = sign('sha256', usageStatementBytes(statement), key).toString('base64');
  return { statement, signature, certificate: certificatePem };
}
