/**
 * Small received items (those delivered in batch envelopes), kept in the
 * state database instead of inbox files: their metadata and content,
 * released atomically with the receipts issued for them. It implements the
 * inbox's {@link InlineItems} port.
 */
import type { InboxMeta, InlineDelivery, InlineItems } from './inbox.ts';
import type { IssuedReceipts } from './issued-receipts.ts';
import type { BatchOp, StateDb } from './state-db.ts';

/** See the module comment. */
export class InlineInbox implements InlineItems {
  private readonly meta;
  private readonly content;

  constructor(
    private readonly db: StateDb,
    private readonly receipts: IssuedReceipts,
  ) {
    this.meta = db.table<InboxMeta>('inbox-meta', 'json');
    this.content = db.table<Buffer>('inbox-content', 'buffer');
  }

  /**
   * Releases small received items to the inbox: their metadata, content and
   * the receipts issued for them, in one atomic batch synced to disk, so a
   * crash leaves either all of an item (with its receipt) or none of it.
   */
  async release(deliveries: readonly InlineDelivery[]): Promise<void> {
    if (deliveries.length === 0) return;
    const ops: BatchOp[] = [];
    for (const d of deliveries) {
      ops.push({ type: 'put', key: d.meta.exchangeId, value: d.meta, sublevel: this.meta });
      ops.push({ type: 'put', key: d.meta.exchangeId, value: d.content, sublevel: this.content });
      ops.push(this.receipts.putOp(d.meta.from, d.meta.exchangeId, d.receipt));
    }
    await this.db.writeSynced(ops);
  }

  inlineItem(id: string): Promise<InboxMeta | undefined> {
    return this.meta.get(id);
  }

  async inlineItemsOf(ids: readonly string[]): Promise<Array<InboxMeta | undefined>> {
    return ids.length === 0 ? [] : this.meta.getMany([...ids]);
  }

  inlineContent(id: string): Promise<Buffer | undefined> {
    return this.content.get(id);
  }

  async inlineItems(): Promise<InboxMeta[]> {
    const out: InboxMeta[] = [];
    for await (const meta of this.meta.values()) out.push(meta);
    return out;
  }

  async putInlineItem(meta: InboxMeta): Promise<void> {
    await this.meta.put(meta.exchangeId, meta, { sync: true } as object);
  }

  async deleteInlineItem(id: string): Promise<void> {
    await this.db.write([
      { type: 'del', key: id, sublevel: this.meta },
      { type: 'del', key: id, sublevel: this.content },
    ]);
  }
}
