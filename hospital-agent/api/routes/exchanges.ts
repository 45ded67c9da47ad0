import type { IncomingMessage } from 'node:http';
import express, { type Router } from 'express';
import type { FastRoute } from '../http.ts';
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

function header(req: IncomingMessage, name: string, required: boolean): string | undefined {
  const raw = req.headers[name];
  const v = Array.isArray(raw) ? raw.join(', ') : raw;
  if (required && (v === undefined || v.trim() === '')) throw new AgentError('ERR_BAD_REQUEST', `header ${name} is required`);
  return v?.trim();
}

/** The Content-Length of a request whose body is not chunked, or undefined. */
function declaredLength(req: IncomingMessage): number | undefined {
  const v = req.headers['content-length'];
  return v !== undefined && req.headers['transfer-encoding'] === undefined && /^\d{1,15}$/.test(v) ? Number(v) : undefined;
}

/**
 * `POST /v1/exchanges`: the body is the payload (streamed); headers name the
 * recipient, patient, consent and purpose. Served as a fast route (see
 * api/http.ts) and, for requests the fast route does not take, by express.
 */
export function submitRoute(service: ExchangeService, requests?: RequestService): FastRoute {
  return {
    method: 'POST',
    path: '/v1/exchanges',
    route: '/exchanges',
    async handle(req, principal) {
      const contentType = req.headers['content-type'];
      if (!contentType) throw new AgentError('ERR_UNSUPPORTED_MEDIA_TYPE', 'Content-Type is required');
      const requestId = header(req, EXCHANGE_HEADERS.request, false);
      const to = header(req, EXCHANGE_HEADERS.recipient, true) as string;
      // Only an answer to an accepted request from the recipient carries the release fee.
      const answers = requestId && requests && (await requests.answerable(requestId, to)) ? requestId : undefined;
      const { record, created } = await service.submit({
        principal,
        idempotencyKey: header(req, EXCHANGE_HEADERS.idempotency, false),
        to,
        patientId: header(req, EXCHANGE_HEADERS.patient, true) as string,
        consentId: header(req, EXCHANGE_HEADERS.consent, true) as string,
        purpose: header(req, EXCHANGE_HEADERS.purpose, false) ?? 'TREAT',
        contentType,
        requestId: answers,
        length: declaredLength(req),
        body: req,
      });
      if (answers && requests) await requests.markAnswered(answers, record.to, record.id).catch(() => undefined);
      return { status: created ? 202 : 200, headers: { Location: `/v1/exchanges/${record.id}` }, body: ExchangeService.view(record) };
    },
  };
}

/** /v1/exchanges: submit (streamed body), list, read status and cancel. */
export function exchangeRoutes(service: ExchangeService, store: ExchangeStore, requests?: RequestService): Router {
  const r = express.Router();
  const submit = submitRoute(service, requests);
  r.post('/exchanges', async (req, res) => {
    const answer = await submit.handle(req, String(res.locals['principal'] ?? ''));
    res
      .status(answer.status)
      .set(answer.headers ?? {})
      .json(answer.body);
  });
  r.get('/exchanges', async (req, res) => {
    const status = req.query['status'];
    if (status !== undefined && !['queued', 'sending', 'delivered', 'failed'].includes(String(status)))
      throw new AgentError('ERR_BAD_REQUEST', 'status must be queued, sending, delivered or failed');
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
  // Ends an exchange not yet released to its recipient; 409 with its state when it was (or is being) released.
  r.delete('/exchanges/:id', async (req, res) => {
    res.json(ExchangeService.view(await service.cancel(String(req.params['id']))));
  });
  return r;
}
