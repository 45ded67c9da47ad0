import express, { type Router } from 'express';
import { z } from 'zod';
import { HOSPITAL_ID_PATTERN } from '../../../certs/index.ts';
import { SCOPE_PATTERN } from '../../../ledger/index.ts';
import { ALL_SCOPE, PURPOSES } from '../../consent/model.ts';
import { AgentError } from '../../errors.ts';
import type { RequestService } from '../../services/requests.ts';
import type { RecordsRequests } from '../../store/requests.ts';
import { parseRequest, patientIdSchema } from '../validate.ts';

const requestSchema = z.strictObject({
  holder: z.string().regex(HOSPITAL_ID_PATTERN),
  patientId: patientIdSchema,
  purpose: z.enum(PURPOSES).default('TREAT'),
  scope: z.array(z.string().regex(SCOPE_PATTERN)).min(1).max(64).default([ALL_SCOPE]),
});

/** /v1/requests: ask another hospital for a patient's records; see requests to and from this hospital. */
export function requestRoutes(service: RequestService, store: RecordsRequests, options: { jsonLimit: string }): Router {
  const r = express.Router();
  r.post('/requests', express.json({ limit: options.jsonLimit }), async (req, res) => {
    const body = parseRequest(requestSchema, req.body, 'request');
    const created = await service.create(body);
    res.status(202).location(`/v1/requests/${created.id}`).json(created);
  });
  r.get('/requests', async (req, res) => {
    const direction = req.query['direction'];
    if (direction !== undefined && direction !== 'incoming' && direction !== 'outgoing')
      throw new AgentError('ERR_BAD_REQUEST', 'direction must be incoming or outgoing');
    res.json({ requests: await store.list(direction) });
  });
  r.get('/requests/:id', async (req, res) => {
    const id = String(req.params['id']);
    const found = /^[0-9a-f-]{36}$/.test(id) ? await store.get(id) : undefined;
    if (!found) throw new AgentError('ERR_NOT_FOUND', 'no such request');
    res.json(found);
  });
  return r;
}
