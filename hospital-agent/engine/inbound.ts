/** What receiving single and batch envelopes shares: the ledger entry of a received item and the refusal of a colliding id. */
import type { InboxMeta } from '../store/inbox.ts';

/** The failed receipt's code for an exchange id that another hospital's inbox item already has. */
export const ID_IN_USE = 'ERR_EXCHANGE_ID_IN_USE';

/** An inbound exchange refused for what it collides with here (its code goes into the failed receipt). */
export class InboundRefusedError extends Error {
  constructor(
    readonly code: typeof ID_IN_USE | 'ERR_CONTENT_PATIENT_MISMATCH',
    message: string,
  ) {
    super(message);
    this.name = this.constructor.name;
  }
}

export function idInUse(exchangeId: string): InboundRefusedError {
  return new InboundRefusedError(ID_IN_USE, `exchange id ${exchangeId} names another hospital's inbox item`);
}

/** The `exchange.received` entry of an inbox item. */
export function receivedEntry(meta: InboxMeta): {
  type: 'exchange.received';
  body: { exchange: string; from: string; contentType: string; bytes: number; hash: string };
} {
  return {
    type: 'exchange.received',
    body: {
      exchange: meta.exchangeId,
      from: meta.from,
      contentType: meta.contentType.split(';')[0]?.trim().toLowerCase() ?? 'application/octet-stream',
      bytes: meta.bytes,
      hash: meta.contentSha256,
    },
  };
}
