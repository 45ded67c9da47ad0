// One job: whether a recipient takes one more transfer from a sender (its slots, and each sender's fair share of them).
import type { AgentConnection } from './connection.ts';
import type { RelayMetrics } from './metrics.ts';

/** Slots of one recipient: all senders together, and each sender alone. */
export interface RecipientLimits {
  maxOpenTransfers: number;
  maxTransfersPerSender: number;
}

/**
 * Why `dst` takes no more transfers from `sender` now, or undefined when it does: it holds
 * `maxOpenTransfers` already, or `sender` holds its fair share of them (so one member that opens
 * transfers and sends nothing cannot take every slot of a hospital).
 */
export function recipientFull(dst: AgentConnection, sender: string, limits: RecipientLimits, metrics: RelayMetrics): string | undefined {
  if (dst.incoming.size >= limits.maxOpenTransfers) return `${dst.id} has too many open transfers`;
  const held = dst.openFrom(sender);
  if (held < limits.maxTransfersPerSender) return undefined;
  metrics.senderShareRefusals.inc();
  return `sender-share: ${sender} holds ${held} open transfers to ${dst.id} (at most ${limits.maxTransfersPerSender} per sender)`;
}
