import express, { type Router } from 'express';
import { z } from 'zod';
import { HOSPITAL_ID_PATTERN } from '../../../certs/index.ts';
import { CODING_PATTERN, REVOCATION_REASONS, SCOPE_PATTERN, TS_PATTERN, consentDecisionAuditEvent } from '../../../ledger/index.ts';
import { consentToFhir, grantFromFhirConsent, normalizeLabel, type ConsentGrant } from '../../consent/fhir.ts';
import { ALL_SCOPE, PURPOSES } from '../../consent/model.ts';
import { AgentError } from '../../errors.ts';
import { FHIR_DATE_TIME_RULE, parseFhirDateTime, type DateBound } from '../../fhir/datetime.ts';
import type { ConsentService } from '../../services/consents.ts';
import type { ConsentDecisions } from '../../store/consent-decisions.ts';
import { parseRequest, patientIdSchema } from '../validate.ts';

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

/** A data category: `system|code` (the system a URI). */
const category = z.string().regex(CODING_PATTERN, "must be 'system|code' with the system a URI (e.g. http://loinc.org|11502-2)");

/** A sensitive label the consent names: `system|code` or a bare code, normalised to `system|code`. */
const label = z.string().transform((s, ctx) => {
  const l = normalizeLabel(s.trim());
  if (l === undefined) {
    ctx.addIssue({
      code: 'custom',
      message: 'must be a sensitivity label: v3-Confidentiality R or V, or a v3-ActCode sensitivity code (PSY, HIV, ETH, SUD...), bare or as system|code',
    });
    return z.NEVER;
  }
  return l;
});

/** Body of POST /v1/consents in the agent's own JSON form. */
export const consentRequestSchema = z.strictObject({
  patientId: patientIdSchema,
  grantee: z.string().regex(HOSPITAL_ID_PATTERN).optional(),
  grantees: z.array(z.string().regex(HOSPITAL_ID_PATTERN)).min(1).max(32).optional(),
  purposes: z.array(z.enum(PURPOSES)).min(1).max(PURPOSES.length).default(['TREAT']),
  scope: z.array(z.string().regex(SCOPE_PATTERN)).min(1).max(64).default([ALL_SCOPE]),
  categories: z.array(category).min(1).max(64).optional(),
  labels: z.array(label).min(1).max(64).optional(),
  validFrom: fhirDate('start').optional(),
  validUntil: fhirDate('end'),
});

/** What a grant must satisfy whichever form it came in: the limits of a `consent.granted` ledger entry. */
const grantSchema = z.strictObject({
  patientId: patientIdSchema,
  grantees: z.array(z.string().regex(HOSPITAL_ID_PATTERN)).min(1).max(32),
  purposes: z.array(z.enum(PURPOSES)).min(1).max(PURPOSES.length),
  scope: z.array(z.string().regex(SCOPE_PATTERN)).min(1).max(64),
  categories: z.array(z.string().regex(CODING_PATTERN)).min(1).max(64).optional(),
  labels: z.array(z.string().regex(CODING_PATTERN)).min(1).max(64).optional(),
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
    grant = {
      patientId: r.patientId,
      grantees,
      purposes: r.purposes,
      scope: r.scope,
      ...(r.categories ? { categories: [...new Set(r.categories)] } : {}),
      ...(r.labels ? { labels: [...new Set(r.labels)] } : {}),
      validFrom: r.validFrom,
      validUntil: r.validUntil,
    };
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

/** Largest page of consent decisions one request returns. */
export const MAX_DECISIONS_PAGE = 1000;

const decisionQuery = z.strictObject({
  format: z.enum(['json', 'balp']).default('json'),
  since: fhirDate('start').optional(),
  limit: z.coerce.number().int().min(1).max(MAX_DECISIONS_PAGE).default(MAX_DECISIONS_PAGE),
});

/**
 * `GET /v1/audit/consent-decisions`: the release gate's decisions (permit
 * and deny) from the local decision log, oldest first, `?since=` a FHIR
 * dateTime, `?limit=`; `?format=balp` answers a FHIR Bundle (collection) of
 * IHE BALP AuthZconsent AuditEvents.
 */
export function decisionRoutes(log: Pick<ConsentDecisions, 'list'>, self: string): Router {
  const r = express.Router();
  r.get('/audit/consent-decisions', async (req, res) => {
    const q = parseRequest(decisionQuery, req.query, 'query');
    const decisions = await log.list({ ...(q.since ? { since: q.since } : {}), limit: q.limit });
    if (q.format === 'json') {
      res.json({ decisions });
      return;
    }
    const bundle = {
      resourceType: 'Bundle',
      type: 'collection',
      timestamp: new Date().toISOString(),
      total: decisions.length,
      entry: decisions.map((d) => {
        const event = consentDecisionAuditEvent(d, self);
        return { fullUrl: `urn:uuid:${uuidOf(String(event['id']))}`, resource: event };
      }),
    };
    res.type('application/fhir+json').send(JSON.stringify(bundle));
  });
  return r;
}

/** A UUID-shaped name for a hex digest (Bundle fullUrls are urn:uuid). */
function uuidOf(hex: string): string {
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}
