import express, { type Router } from 'express';
import { z } from 'zod';
import { CARD_PURPOSES, ShcError } from '../../../certs/shc/index.ts';
import type { CertificateIssuer } from '../../certificates/index.ts';
import { AgentError } from '../../errors.ts';
import { parseRequest } from '../validate.ts';

/** Largest issuance request (a FHIR Bundle of a few resources). */
export const CERTIFICATE_JSON_LIMIT = '256kb';

const FHIR_DATE = /^\d{4}(-\d{2}(-\d{2})?)?$/;
/** Body of POST /v1/certificates. */
export const certificateRequestSchema = z.strictObject({
  purpose: z.enum(CARD_PURPOSES),
  bundle: z.looseObject({ resourceType: z.literal('Bundle') }),
  period: z.strictObject({ start: z.string().regex(FHIR_DATE), end: z.string().regex(FHIR_DATE) }).optional(),
  validForSeconds: z
    .number()
    .int()
    .min(60)
    .max(10 * 366 * 86_400)
    .optional(),
});

/**
 * POST /v1/certificates: issue a SMART Health Card for one purpose from a
 * FHIR Bundle (docs/certificates.md). 201 with the card (JWS, hash, kid, rid,
 * `shc:/` QR texts, what it states, its ledger entry); the caller renders it
 * (`hie-agent certificate issue` writes PNG, SVG and HTML). No patient data is logged.
 */
export function certificateRoutes(issuer: () => CertificateIssuer | undefined): Router {
  const r = express.Router();
  r.post('/certificates', express.json({ limit: CERTIFICATE_JSON_LIMIT, type: ['application/json', 'application/fhir+json'] }), async (req, res) => {
    const i = issuer();
    if (!i) throw new AgentError('ERR_CERTIFICATES_DISABLED', 'this agent issues no certificates: set certificates.iss (docs/certificates.md)');
    const body = parseRequest(certificateRequestSchema, req.body, 'certificate request');
    try {
      res.status(201).json(await i.issue(body));
    } catch (err) {
      if (err instanceof ShcError) throw new AgentError('ERR_CERTIFICATE_BUNDLE', err.message);
      throw err;
    }
  });
  return r;
}
