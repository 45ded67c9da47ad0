import express, { type Router } from 'express';
import { z } from 'zod';
import { HOSPITAL_ID_PATTERN } from '../../../certs/index.ts';
import { ID_PATTERN } from '../../../ledger/index.ts';
import { ELIGIBILITY_OUTCOMES, MAX_DISPOSITION_CHARS, summarizeEligibility, type EligibilityService, type EligibilityStore } from '../../claims/index.ts';
import { AgentError } from '../../errors.ts';
import { parseRequest, patientIdSchema } from '../validate.ts';

const requestSchema = z.strictObject({
  insurer: z.string().regex(HOSPITAL_ID_PATTERN),
  patientId: patientIdSchema,
  consentId: z.string().regex(ID_PATTERN).optional(),
  request: z.record(z.string(), z.unknown()),
  coverage: z.record(z.string(), z.unknown()),
});

const respondSchema = z.strictObject({
  outcome: z.enum(ELIGIBILITY_OUTCOMES),
  inforce: z.boolean().optional(),
  disposition: z.string().trim().min(1).max(MAX_DISPOSITION_CHARS).optional(),
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * /v1/eligibility: a hospital asks an insurer whether a Coverage is in force
 * (CoverageEligibilityRequest) and follows it; an insurer's claims system
 * lists what arrived and answers it, at once or pended.
 */
export function eligibilityRoutes(service: EligibilityService, store: EligibilityStore, options: { jsonLimit: string }): Router {
  const r = express.Router();
  const find = async (raw: unknown): Promise<NonNullable<Awaited<ReturnType<EligibilityStore['get']>>>> => {
    const id = String(raw);
    const found = UUID.test(id) ? await store.get(id) : undefined;
    if (!found) throw new AgentError('ERR_NOT_FOUND', 'no such eligibility request');
    return found;
  };
  r.post('/eligibility', express.json({ limit: options.jsonLimit }), async (req, res) => {
    const body = parseRequest(requestSchema, req.body, 'eligibility request');
    const { record, created } = await service.request(body);
    res
      .status(created ? 202 : 200)
      .location(`/v1/eligibility/${record.id}`)
      .json(summarizeEligibility(record));
  });
  r.get('/eligibility', async (req, res) => {
    const direction = req.query['direction'];
    if (direction !== undefined && direction !== 'incoming' && direction !== 'outgoing')
      throw new AgentError('ERR_BAD_REQUEST', 'direction must be incoming or outgoing');
    res.json({ requests: (await store.list(direction)).map(summarizeEligibility) });
  });
  r.get('/eligibility/:id', async (req, res) => {
    const { jwe: _sealed, ...request } = await find(req.params['id']);
    res.json(request);
  });
  r.post('/eligibility/:id/response', express.json({ limit: options.jsonLimit }), async (req, res) => {
    const found = await find(req.params['id']);
    const body = parseRequest(respondSchema, req.body, 'response');
    res.json(summarizeEligibility(await service.respond(found.id, body)));
  });
  return r;
}
