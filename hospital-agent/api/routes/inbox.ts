import express, { type Router } from 'express';
import { pipeline } from 'node:stream/promises';
import { AgentError } from '../../errors.ts';
import type { Inbox } from '../../store/inbox.ts';
import { SAFE_ID } from '../../store/inbox.ts';

function idParam(value: unknown): string {
  if (typeof value !== 'string' || !SAFE_ID.test(value)) throw new AgentError('ERR_NOT_FOUND', 'no such inbox item');
  return value;
}

/** /v1/inbox: verified inbound exchanges, their content (streamed), ack and delete. */
export function inboxRoutes(inbox: Inbox): Router {
  const r = express.Router();
  r.get('/inbox', async (req, res) => {
    const unacked = req.query['unacked'] === 'true';
    const items = await inbox.list();
    res.json({ items: unacked ? items.filter((i) => !i.ackedAt) : items });
  });
  r.get('/inbox/:id', async (req, res) => {
    const meta = await inbox.get(idParam(req.params['id']));
    if (!meta) throw new AgentError('ERR_NOT_FOUND', 'no such inbox item');
    res.json(meta);
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
    await inbox.remove(idParam(req.params['id']));
    res.status(204).end();
  });
  return r;
}
