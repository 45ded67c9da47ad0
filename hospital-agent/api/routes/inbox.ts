import express, { type Router } from 'express';
import { pipeline } from 'node:stream/promises';
import { AgentError } from '../../errors.ts';
import type { Inbox, InboxMeta } from '../../store/inbox.ts';
import { hexDigest } from '../../../ledger/index.ts';
import { SAFE_ID } from '../../store/inbox.ts';

function idParam(value: unknown): string {
  if (typeof value !== 'string' || !SAFE_ID.test(value)) throw new AgentError('ERR_NOT_FOUND', 'no such inbox item');
  return value;
}

/** An inbox item as a person or the EHR reads it: the content hash as lowercase hex (as `sha256sum` prints it), and the records request it answers. */
async function view(meta: InboxMeta, requestOf?: (exchangeId: string) => Promise<string | undefined>): Promise<InboxMeta & { requestId?: string }> {
  const requestId = await requestOf?.(meta.exchangeId);
  return { ...meta, contentSha256: hexDigest(meta.contentSha256), ...(requestId ? { requestId } : {}) };
}

/** /v1/inbox: verified inbound exchanges, their content (streamed), ack and delete. */
export function inboxRoutes(
  inbox: Inbox,
  options: {
    requestOf?: (exchangeId: string) => Promise<string | undefined>;
    /** Called after an item is deleted (removes its copy in the EHR's directory). */
    onRemoved?: (meta: InboxMeta) => Promise<void>;
  } = {},
): Router {
  const r = express.Router();
  r.get('/inbox', async (req, res) => {
    const unacked = req.query['unacked'] === 'true';
    const items = await inbox.list();
    res.json({ items: await Promise.all((unacked ? items.filter((i) => !i.ackedAt) : items).map((i) => view(i, options.requestOf))) });
  });
  r.get('/inbox/:id', async (req, res) => {
    const meta = await inbox.get(idParam(req.params['id']));
    if (!meta) throw new AgentError('ERR_NOT_FOUND', 'no such inbox item');
    res.json(await view(meta, options.requestOf));
  });
  r.get('/inbox/:id/content', async (req, res) => {
    const id = idParam(req.params['id']);
    const meta = await inbox.get(id);
    if (!meta) throw new AgentError('ERR_NOT_FOUND', 'no such inbox item');
    const stream = await inbox.openContent(id);
    try {
      res.status(200);
      res.setHeader('Content-Type', meta.contentType);
      res.setHeader('Content-Length', String(meta.bytes));
      res.setHeader('Digest', `sha-256=${Buffer.from(meta.contentSha256, meta.contentSha256.length === 64 ? 'hex' : 'base64url').toString('base64')}`);
      res.setHeader('Content-Disposition', `attachment; filename="${id}"`);
    } catch (err) {
      // An answer that cannot be sent leaves no file open behind it.
      stream.destroy();
      throw err;
    }
    await pipeline(stream, res);
  });
  r.post('/inbox/:id/ack', async (req, res) => {
    res.json(await inbox.ack(idParam(req.params['id'])));
  });
  r.delete('/inbox/:id', async (req, res) => {
    const id = idParam(req.params['id']);
    const meta = await inbox.get(id);
    await inbox.remove(id);
    if (meta) await options.onRemoved?.(meta);
    res.status(204).end();
  });
  return r;
}
