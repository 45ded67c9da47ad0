import express, { type Router } from 'express';
import { z } from 'zod';
import { HOSPITAL_ID_PATTERN } from '../../../certs/index.ts';
import { ID_PATTERN } from '../../../ledger/index.ts';
import { FINAL_OUTCOMES, MAX_DISPOSITION_CHARS, summarize, type ClaimService, type ClaimStore } from '../../claims/index.ts';
import { AgentError } from '../../errors.ts';
import { parseRequest } from '../validate.ts';

const submitSchema = z.strictObject({
  insurer: z.string().regex(HOSPITAL_ID_PATTERN),
  patientId: z.string().trim().min(1).max(256),
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
  r.post('/claims', express.json({ limit: options.jsonLimit }), async (req, res) => {
    const body = parseRequest(submitSchema, req.body, 'claim');
    const { record, created } = await service.submit(body);
    res
      .status(created ? 202 : 200)
      .location(`/v1/claims/${record.id}`)
      .json(summarize(record));
  });
  r.get('/claims', async (req, res) => {
    const direction = req.query['direction'];
    if (direction !== undefined && direction !== 'incoming' && direction !== 'outgoing')
      throw new AgentError('ERR_BAD_REQUEST', 'direction must be incoming or outgoing');
    res.json({ claims: (await store.list(direction)).map(summarize) });
  });
  r.get('/claims/:id', async (req, res) => {
    const { jwe: _sealed, ...claim } = await find(req.params['id']);
    res.json(claim);
  });
  r.post('/claims/:id/response', express.json({ limit: options.jsonLimit }), async (req, res) => {
    const claim = await find(req.params['id']);
    const body = parseRequest(respondSchema, req.body, 'response');
    res.json(summarize(await service.respond(claim.id, body)));
  });
  return r;
}
