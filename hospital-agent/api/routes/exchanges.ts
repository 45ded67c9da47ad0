import express, { type Router } from 'express';
import { AgentError } from '../../errors.ts';
import { ExchangeService } from '../../services/exchanges.ts';
import type { RequestService } from '../../services/requests.ts';
import type { ExchangeStatus, ExchangeStore } from '../../store/exchanges.ts';

/** Request headers of POST /v1/exchanges (the body is the payload itself, streamed). */
export const EXCHANGE_HEADERS = {
  recipient: 'hie-recipient',
  patient: 'hie-patient-id',
  consent: 'hie-consent-id',
  purpose: 'hie-purpose',
  idempotency: 'idempotency-key',
  request: 'hie-request-id',
} as const;

function header(req: express.Request, name: string, required: boolean): string | undefined {
  const v = req.get(name);
  if (required && (v === undefined || v.trim() === '')) throw new AgentError('ERR_BAD_REQUEST', `header ${name} is required`);
  return v?.trim();
}

/** /v1/exchanges: submit (streamed body), list and read status. */
export function exchangeRoutes(service: ExchangeService, store: ExchangeStore, requests?: RequestService): Router {
  const r = express.Router();
  r.post('/exchanges', async (req, res) => {
    const contentType = req.get('content-type');
    if (!contentType) throw new AgentError('ERR_UNSUPPORTED_MEDIA_TYPE', 'Content-Type is required');
    const requestId = header(req, EXCHANGE_HEADERS.request, false);
    const to = header(req, EXCHANGE_HEADERS.recipient, true) as string;
    // Only an answer to an accepted request from the recipient carries the release fee.
    const answers = requestId && requests && (await requests.answerable(requestId, to)) ? requestId : undefined;
    const { record, created } = await service.submit({
      principal: String(res.locals['principal'] ?? ''),
      idempotencyKey: header(req, EXCHANGE_HEADERS.idempotency, false),
      to,
      patientId: header(req, EXCHANGE_HEADERS.patient, true) as string,
      consentId: header(req, EXCHANGE_HEADERS.consent, true) as string,
      purpose: header(req, EXCHANGE_HEADERS.purpose, false) ?? 'TREAT',
      contentType,
      requestId: answers,
      body: req,
    });
    if (requestId && requests) await requests.markAnswered(requestId, record.to).catch(() => undefined);
    res.status(created ? 202 : 200).location(`/v1/exchanges/${record.id}`).json(ExchangeService.view(record));
  });
  r.get('/exchanges', async (req, res) => {
    const status = req.query['status'];
    if (status !== undefined && !['queued', 'sending', 'delivered', 'failed'].includes(String(status))) throw new AgentError('ERR_BAD_REQUEST', 'status must be queued, sending, delivered or failed');
    const limit = Math.min(1000, Math.max(1, Number.parseInt(String(req.query['limit'] ?? '100'), 10) || 100));
    const list = await store.list({ ...(status ? { status: status as ExchangeStatus } : {}), limit });
    res.json({ exchanges: list.map((x) => ExchangeService.view(x)) });
  });
  r.get('/exchanges/:id', async (req, res) => {
    const id = String(req.params['id']);
    const record = /^[A-Za-z0-9][A-Za-z0-9_-]{7,63}$/.test(id) ? await store.get(id) : undefined;
    if (!record) throw new AgentError('ERR_NOT_FOUND', 'no such exchange');
    res.json(ExchangeService.view(record));
  });
  return r;
}
