import express, { type Router } from 'express';
import QRCode from 'qrcode';
import { z } from 'zod';
import { AgentError } from '../../errors.ts';
import type { RunningPatients } from '../../patients/start.ts';
import { MAX_RECORDS_BYTES } from '../../patients/service.ts';
import { PatientStore, type ConsentRequestRecord } from '../../patients/store.ts';
import { parseRequest, patientIdSchema } from '../validate.ts';
import { grantFromRequest } from './consents.ts';

/** The header the patient routes read the patient id from (kept out of URLs and access logs). */
const PATIENT_HEADER = 'hie-patient-id';

const enrolSchema = z.strictObject({ patientId: patientIdSchema });

const patientOf = (req: express.Request): string => parseRequest(patientIdSchema, req.get(PATIENT_HEADER), `${PATIENT_HEADER} header`);

/**
 * /v1/patients (docs/patients.md): one-time enrolment codes with their QR code (PNG, base64, and SVG), consent requests
 * the patient answers in the app (create, list, read), the copy of their own records the EHR pushes (a FHIR Bundle,
 * sent end to end encrypted to their device), and the patient's access log. Without `patients.app.enabled`,
 * every route answers 404 ERR_NOT_FOUND saying so.
 */
export function patientRoutes(patients: RunningPatients | undefined, options: { jsonLimit: string }): Router {
  const r = express.Router();
  if (!patients) {
    r.use('/patients', () => {
      throw new AgentError('ERR_NOT_FOUND', 'the patient app is not enabled on this agent (patients.app.enabled)');
    });
    return r;
  }
  const json = express.json({ limit: options.jsonLimit });
  const isJson = (req: express.Request): void => {
    if (!req.is('application/json')) throw new AgentError('ERR_UNSUPPORTED_MEDIA_TYPE', 'send application/json');
  };
  r.post('/patients/enrolments', json, async (req, res) => {
    isJson(req);
    const { patientId } = parseRequest(enrolSchema, req.body, 'enrolment');
    const e = await patients.service.enrol(patientId);
    // Level M (not the SVG's L): more robust on paper, and what common decoders (jsQR) read at this length.
    const png = await QRCode.toBuffer(e.link, { type: 'png', errorCorrectionLevel: 'M', margin: 4, scale: 4 });
    res.status(201).json({ link: e.link, expiresAt: e.expiresAt, qrPng: png.toString('base64'), qrSvg: e.qrSvg });
  });
  r.post('/patients/consent-requests', json, async (req, res) => {
    isJson(req);
    const g = grantFromRequest(req.body);
    const request = await patients.service.requestConsent(g.patientId, {
      grantees: g.grantees,
      purposes: g.purposes,
      scope: g.scope,
      ...(g.categories ? { categories: g.categories } : {}),
      ...(g.labels ? { labels: g.labels } : {}),
      ...(g.validFrom ? { validFrom: g.validFrom } : {}),
      validUntil: g.validUntil,
    });
    res.status(201).location(`/v1/patients/consent-requests/${request.id}`).json(request);
  });
  r.get('/patients/consent-requests', async (req, res) => {
    const patientId = patientOf(req);
    const all = await PatientStore.values<ConsentRequestRecord>(patients.store.requests);
    res.json({ requests: all.filter((q) => q.patientId === patientId).sort((a, b) => b.createdAt.localeCompare(a.createdAt)) });
  });
  r.get('/patients/consent-requests/:id', async (req, res) => {
    const request = await patients.store.requests.get(req.params['id'] as string);
    if (!request) throw new AgentError('ERR_NOT_FOUND', 'no such consent request');
    res.json(request);
  });
  // The EHR pushes the patient's own records; the patient in the header (kept out of URLs), the Bundle as the body.
  const fhirBody = express.raw({ type: () => true, limit: MAX_RECORDS_BYTES });
  r.post('/patients/records', fhirBody, async (req, res) => {
    if (!req.is('application/fhir+json') && !req.is('application/json')) throw new AgentError('ERR_UNSUPPORTED_MEDIA_TYPE', 'send application/fhir+json');
    const patientId = patientOf(req);
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    res.status(201).json(await patients.service.pushRecords(patientId, body));
  });
  r.get('/patients/access-log', async (req, res) => {
    res.json({ releases: await patients.service.accessLog(patientOf(req)) });
  });
  return r;
}
