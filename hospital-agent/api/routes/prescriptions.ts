import express, { type Router } from 'express';
import { z } from 'zod';
import { HOSPITAL_ID_PATTERN } from '../../../certs/index.ts';
import { ID_PATTERN } from '../../../ledger/index.ts';
import { AgentError } from '../../errors.ts';
import {
  parsePrescriptionToken,
  tokenPng,
  TASK_STATES,
  type HeldPrescription,
  type PrescriptionService,
  type PrescriptionStore,
  type PrescriptionTask,
} from '../../prescriptions/index.ts';
import { parseRequest, patientIdSchema } from '../validate.ts';

const issueSchema = z.strictObject({
  patientId: patientIdSchema,
  medicationRequest: z.record(z.string(), z.unknown()),
  /** Also return the token as a QR code PNG (data URL). */
  qr: z.boolean().default(false),
});
const abortSchema = z.strictObject({
  accessCode: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
});
const acceptSchema = z.union([
  z.strictObject({ prescriber: z.string().regex(HOSPITAL_ID_PATTERN), id: z.string().regex(ID_PATTERN), accessCode: z.string().regex(/^[0-9a-f]{64}$/) }),
  z.strictObject({ token: z.string().min(1).max(1024) }),
]);
const closeSchema = z.strictObject({ medicationDispense: z.record(z.string(), z.unknown()) });

/** A Task as the API shows it: the state, parties and hashes (never the access code, the secret or the patient). */
function showTask(t: PrescriptionTask): Record<string, unknown> {
  return {
    id: t.id,
    status: t.status,
    medicationRequestSha256: Buffer.from(t.medicationRequestHash, 'base64url').toString('hex'),
    createdAt: t.createdAt,
    updatedAt: t.updatedAt,
    ...(t.pharmacy ? { pharmacy: t.pharmacy } : {}),
    ...(t.acceptedAt ? { acceptedAt: t.acceptedAt } : {}),
    ...(t.completedAt ? { completedAt: t.completedAt, receipt: t.receipt } : {}),
    ...(t.cancelledBy ? { cancelledBy: t.cancelledBy } : {}),
  };
}

/** A held prescription as the pharmacy's API shows it (without the secret). */
function showHeld(h: HeldPrescription, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const { secret: _secret, ...rest } = h;
  return { ...rest, ...extra };
}

const taskId = (raw: unknown): string => {
  const id = String(raw);
  if (!ID_PATTERN.test(id)) throw new AgentError('ERR_NOT_FOUND', 'no such prescription');
  return id;
};
const prescriberId = (raw: unknown): string => {
  const id = String(raw);
  if (!HOSPITAL_ID_PATTERN.test(id)) throw new AgentError('ERR_NOT_FOUND', 'no such prescription');
  return id;
};

/**
 * /v1/prescriptions (this agent as prescriber: issue, status, list, abort)
 * and /v1/dispensing (this agent as pharmacy: accept, reject, close, list).
 */
export function prescriptionRoutes(service: PrescriptionService, store: PrescriptionStore, options: { jsonLimit: string }): Router {
  const r = express.Router();
  const json = express.json({ limit: options.jsonLimit });
  r.post('/prescriptions', json, async (req, res) => {
    const body = parseRequest(issueSchema, req.body, 'prescription');
    const { task, accessCode, token } = await service.issue(body);
    const qr = body.qr ? `data:image/png;base64,${(await tokenPng(token)).toString('base64')}` : undefined;
    res
      .status(201)
      .location(`/v1/prescriptions/${task.id}`)
      .json({ ...showTask(task), accessCode, token, ...(qr ? { qr } : {}) });
  });
  r.get('/prescriptions', async (req, res) => {
    const status = req.query['status'];
    if (status !== undefined && !(TASK_STATES as readonly unknown[]).includes(status))
      throw new AgentError('ERR_BAD_REQUEST', `status must be one of ${TASK_STATES.join(', ')}`);
    res.json({ prescriptions: (await store.list(status as string | undefined)).map(showTask) });
  });
  r.get('/prescriptions/:id', async (req, res) => {
    const found = await store.get(taskId(req.params['id']));
    if (!found) throw new AgentError('ERR_NOT_FOUND', 'no such prescription');
    res.json(showTask(found));
  });
  r.post('/prescriptions/:id/abort', json, async (req, res) => {
    const body = parseRequest(abortSchema, req.body ?? {}, 'abort');
    res.json(showTask(await service.abort(taskId(req.params['id']), body.accessCode)));
  });
  r.post('/dispensing', json, async (req, res) => {
    const body = parseRequest(acceptSchema, req.body, 'accept');
    const target = 'token' in body ? parsePrescriptionToken(body.token) : { prescriber: body.prescriber, task: body.id, accessCode: body.accessCode };
    if (!target) throw new AgentError('ERR_BAD_REQUEST', 'accept: token: not a prescription token');
    const { resource, ...held } = await service.accept({ prescriber: target.prescriber, id: target.task, accessCode: target.accessCode });
    res.json(showHeld(held, { medicationRequest: resource }));
  });
  r.get('/dispensing', async (_req, res) => {
    res.json({ prescriptions: (await store.listHeld()).map((h) => showHeld(h)) });
  });
  r.get('/dispensing/:prescriber/:id', async (req, res) => {
    const found = await store.getHeld(prescriberId(req.params['prescriber']), taskId(req.params['id']));
    if (!found) throw new AgentError('ERR_NOT_FOUND', 'this pharmacy holds no such prescription');
    res.json(showHeld(found));
  });
  r.post('/dispensing/:prescriber/:id/reject', async (req, res) => {
    res.json(showHeld(await service.reject(prescriberId(req.params['prescriber']), taskId(req.params['id']))));
  });
  r.post('/dispensing/:prescriber/:id/close', json, async (req, res) => {
    const body = parseRequest(closeSchema, req.body, 'close');
    const { receiptPayload, ...held } = await service.close(prescriberId(req.params['prescriber']), taskId(req.params['id']), body.medicationDispense);
    res.json(showHeld(held, { dispensed: receiptPayload }));
  });
  return r;
}
