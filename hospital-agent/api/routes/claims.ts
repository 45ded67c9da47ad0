import { createHash } from 'node:crypto';
import express, { type Router } from 'express';
import { z } from 'zod';
import { HOSPITAL_ID_PATTERN } from '../../../certs/index.ts';
import { ID_PATTERN } from '../../../ledger/index.ts';
import { FINAL_OUTCOMES, MAX_DISPOSITION_CHARS, summarize, type ClaimRecord, type ClaimService, type ClaimStore } from '../../claims/index.ts';
import { AgentError } from '../../errors.ts';
import { parseRequest, patientIdSchema } from '../validate.ts';

const submitSchema = z.strictObject({
  insurer: z.string().regex(HOSPITAL_ID_PATTERN),
  patientId: patientIdSchema,
  consentId: z.string().regex(ID_PATTERN).optional(),
  claim: z.record(z.string(), z.unknown()),
  coverage: z.record(z.string(), z.unknown()),
});

const respondSchema = z.strictObject({
  outcome: z.enum(FINAL_OUTCOMES),
  paid: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  disposition: z.string().trim().min(1).max(MAX_DISPOSITION_CHARS).optional(),
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The longest `Prefer: wait=N` honoured, in seconds (a longer one is cut to this). */
export const MAX_PREFER_WAIT_SECONDS = 30;

/**
 * The seconds of an RFC 7240 `Prefer: wait=N` (among other preferences, in
 * one header or several), capped at {@link MAX_PREFER_WAIT_SECONDS}; 0 when
 * there is none or it is not a whole number (a preference a server may ignore).
 */
export function preferWait(header: string | string[] | undefined): number {
  for (const part of [header ?? []].flat().join(',').split(',')) {
    const m = /^\s*wait\s*=\s*"?(\d{1,6})"?\s*$/i.exec(part);
    if (m) return Math.min(Number(m[1]), MAX_PREFER_WAIT_SECONDS);
  }
  return 0;
}

/** A strong ETag of what a GET answers for a claim (its JSON view). */
function etagOf(view: unknown): string {
  return `"${createHash('sha256').update(JSON.stringify(view)).digest('base64url').slice(0, 27)}"`;
}

/** Whether an If-None-Match header names `tag` (or `*`). */
function noneMatch(header: string | undefined, tag: string): boolean {
  if (!header) return false;
  return header.split(',').some((t) => {
    const v = t.trim().replace(/^W\//, '');
    return v === '*' || v === tag;
  });
}

/**
 * /v1/claims: a hospital submits a Claim to an insurer and follows it; an
 * insurer's claims system lists what arrived and answers it.
 */
export function claimRoutes(service: ClaimService, store: ClaimStore, options: { jsonLimit: string }): Router {
  const r = express.Router();
  const find = async (raw: unknown): Promise<NonNullable<Awaited<ReturnType<ClaimStore['get']>>>> => {
    const id = String(raw);
    const found = UUID.test(id) ? await store.get(id) : undefined;
    if (!found) throw new AgentError('ERR_NOT_FOUND', 'no such claim');
    return found;
  };
  /** The claim as GET answers it (without the sealed copy). */
  const viewOf = (record: ClaimRecord): Omit<ClaimRecord, 'jwe'> => {
    const { jwe: _sealed, ...claim } = record;
    return claim;
  };
  /** Aborted when the client goes away (a long poll it gave up on frees its waiter), or by the route when it need not wait. */
  const whileConnected = (res: express.Response): AbortController => {
    const ac = new AbortController();
    res.once('close', () => ac.abort());
    return ac;
  };
  r.post('/claims', express.json({ limit: options.jsonLimit }), async (req, res) => {
    const body = parseRequest(submitSchema, req.body, 'claim');
    const wait = preferWait(req.headers['prefer']);
    const { record, created } = await service.submit(body);
    let now = record;
    if (wait > 0) {
      // `Prefer: wait=N`: answer once the insurer's first response is in (or after N s), not with `sent`.
      const ac = whileConnected(res);
      const changed = store.nextChange(record.id, wait * 1000, ac.signal);
      now = (await store.get(record.id)) ?? record;
      if (now.status === 'sent' && now.responses.length === 0) {
        if (await changed) now = (await store.get(record.id)) ?? now;
      } else ac.abort();
      res.setHeader('Preference-Applied', `wait=${wait}`);
    }
    res
      .status(created ? 202 : 200)
      .location(`/v1/claims/${record.id}`)
      .json(summarize(now));
  });
  r.get('/claims', async (req, res) => {
    const direction = req.query['direction'];
    if (direction !== undefined && direction !== 'incoming' && direction !== 'outgoing')
      throw new AgentError('ERR_BAD_REQUEST', 'direction must be incoming or outgoing');
    res.json({ claims: (await store.list(direction)).map(summarize) });
  });
  // A long poll: `If-None-Match` with the ETag the client holds and `Prefer: wait=N` answer at the claim's next change
  // (200 with its new ETag), or 304 after N seconds without one.
  r.get('/claims/:id', async (req, res) => {
    const id = String(req.params['id']);
    const wait = preferWait(req.headers['prefer']);
    const held = req.headers['if-none-match'];
    // The wait starts before the one read, so a change between the read and the wait is not missed.
    const ac = wait > 0 && held && UUID.test(id) ? whileConnected(res) : undefined;
    const changed = ac ? store.nextChange(id, wait * 1000, ac.signal) : undefined;
    let record;
    try {
      record = await find(id);
    } catch (err) {
      ac?.abort();
      throw err;
    }
    let view = viewOf(record);
    let tag = etagOf(view);
    if (changed && noneMatch(held, tag)) {
      if (await changed) {
        view = viewOf((await store.get(id)) ?? record);
        tag = etagOf(view);
      }
    } else ac?.abort();
    res.setHeader('ETag', tag);
    res.setHeader('Cache-Control', 'no-store');
    if (wait > 0) res.setHeader('Preference-Applied', `wait=${wait}`);
    if (noneMatch(held, tag)) {
      res.status(304).end();
      return;
    }
    res.json(view);
  });
  r.post('/claims/:id/response', express.json({ limit: options.jsonLimit }), async (req, res) => {
    const claim = await find(req.params['id']);
    const body = parseRequest(respondSchema, req.body, 'response');
    res.json(summarize(await service.respond(claim.id, body)));
  });
  return r;
}
