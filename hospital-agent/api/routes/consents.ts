import express, { type Router } from 'express';
import { z } from 'zod';
import { HOSPITAL_ID_PATTERN } from '../../../certs/index.ts';
import { REVOCATION_REASONS, SCOPE_PATTERN, TS_PATTERN } from '../../../ledger/index.ts';
import { consentToFhir, grantFromFhirConsent, type ConsentGrant } from '../../consent/fhir.ts';
import { ALL_SCOPE, PURPOSES } from '../../consent/model.ts';
import { AgentError } from '../../errors.ts';
import { FHIR_DATE_TIME_RULE, parseFhirDateTime, type DateBound } from '../../fhir/datetime.ts';
import type { ConsentService } from '../../services/consents.ts';
import { parseRequest } from '../validate.ts';

/**
 * A validity bound: a FHIR `dateTime`, strictly (fhir/datetime.ts), as the
 * instant it stands for (a partial date's first or last millisecond, by
 * `bound`), in the ledger's form.
 */
const fhirDate = (bound: DateBound): z.ZodType<string, string> =>
  z.string().transform((s, ctx) => {
    const t = parseFhirDateTime(s, bound);
    const iso = t?.toISOString();
    if (iso === undefined || !TS_PATTERN.test(iso)) {
      ctx.addIssue({ code: 'custom', message: FHIR_DATE_TIME_RULE });
      return z.NEVER;
    }
    return iso;
  });

/** Body of POST /v1/consents in the agent's own JSON form. */
export const consentRequestSchema = z.strictObject({
  patientId: z.string().trim().min(1).max(256),
  grantee: z.string().regex(HOSPITAL_ID_PATTERN).optional(),
  grantees: z.array(z.string().regex(HOSPITAL_ID_PATTERN)).min(1).max(32).optional(),
  purposes: z.array(z.enum(PURPOSES)).min(1).max(PURPOSES.length).default(['TREAT']),
  scope: z.array(z.string().regex(SCOPE_PATTERN)).min(1).max(64).default([ALL_SCOPE]),
  validFrom: fhirDate('start').optional(),
  validUntil: fhirDate('end'),
});

/** What a grant must satisfy whichever form it came in: the limits of a `consent.granted` ledger entry. */
const grantSchema = z.strictObject({
  patientId: z.string().trim().min(1).max(256),
  grantees: z.array(z.string().regex(HOSPITAL_ID_PATTERN)).min(1).max(32),
  purposes: z.array(z.enum(PURPOSES)).min(1).max(PURPOSES.length),
  scope: z.array(z.string().regex(SCOPE_PATTERN)).min(1).max(64),
  validFrom: fhirDate('start').optional(),
  validUntil: fhirDate('end'),
});

/** Turns a POST body (own JSON form or a FHIR R4 Consent) into a grant, checked against what the ledger can record. */
export function grantFromRequest(body: unknown): ConsentGrant {
  let grant: ConsentGrant;
  if (body && typeof body === 'object' && (body as { resourceType?: unknown }).resourceType !== undefined) grant = grantFromFhirConsent(body);
  else {
    const r = parseRequest(consentRequestSchema, body, 'consent');
    const grantees = [...new Set([...(r.grantee ? [r.grantee] : []), ...(r.grantees ?? [])])];
    if (grantees.length === 0) throw new AgentError('ERR_BAD_REQUEST', 'consent: grantee or grantees is required');
    grant = { patientId: r.patientId, grantees, purposes: r.purposes, scope: r.scope, validFrom: r.validFrom, validUntil: r.validUntil };
  }
  return parseRequest(grantSchema, grant, 'consent');
}

/** /v1/consents: grant (own JSON or FHIR R4 Consent), list, read (JSON or `?format=fhir`), revoke. */
export function consentRoutes(service: ConsentService, self: string, options: { jsonLimit: string }): Router {
  const r = express.Router();
  const json = express.json({ limit: options.jsonLimit, type: ['application/json', 'application/fhir+json'] });
  r.post('/consents', json, async (req, res) => {
    if (!req.is(['application/json', 'application/fhir+json']))
      throw new AgentError('ERR_UNSUPPORTED_MEDIA_TYPE', 'send application/json or application/fhir+json');
    const consent = await service.grant(grantFromRequest(req.body));
    res.status(201).location(`/v1/consents/${consent.id}`).json(consent);
  });
  r.get('/consents', async (_req, res) => {
    res.json({ consents: await service.list() });
  });
  r.get('/consents/:id', async (req, res) => {
    const consent = await service.get(req.params['id'] as string);
    if (!consent) throw new AgentError('ERR_NOT_FOUND', 'no such consent');
    if (req.query['format'] === 'fhir') res.type('application/fhir+json').send(JSON.stringify(consentToFhir(consent, self)));
    else res.json(consent);
  });
  r.delete('/consents/:id', async (req, res) => {
    const reason = parseRequest(z.enum(REVOCATION_REASONS).default('patient-request'), req.query['reason'], 'reason');
    res.json(await service.revoke(req.params['id'] as string, reason));
  });
  return r;
}
