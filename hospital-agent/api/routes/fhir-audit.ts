import express, { type Response, type Router } from 'express';
import type { Ledger } from '../../../ledger/index.ts';
import type { AccessLog } from '../../console/access-log.ts';
import { parseAuditQuery, patientOf, searchAuditEvents, searchConsents, type PatientHasher, type QueryParams } from '../../console/audit-query.ts';
import type { LedgerIndex } from '../../console/ledger-index.ts';

const FHIR_JSON = 'application/fhir+json; charset=utf-8';

const send = (res: Response, body: unknown): void => {
  res.status(200).type(FHIR_JSON).send(JSON.stringify(body));
};

/**
 * /fhir: the audit API. `GET /fhir/AuditEvent` (an IHE ITI-81 subset: date,
 * patient, entity, agent, outcome, type, subtype, _count, `next` links) and
 * `GET /fhir/Consent?patient=`, both searchset Bundles; errors are
 * OperationOutcomes. The clear patient id is hashed and forgotten: links and
 * answers name the patient only by its keyed hash. With `accessLog`, every
 * search is recorded there as the console's views are (the token's name, the
 * patient hash, the other parameters).
 */
export function fhirAuditRoutes(index: LedgerIndex, ledger: Ledger, hash: PatientHasher, accessLog?: AccessLog): Router {
  const r = express.Router();
  const record = (res: Response, view: string, q: QueryParams, patient: string | undefined): void => {
    if (!accessLog) return;
    const query: Record<string, string> = {};
    for (const [k, v] of Object.entries(q)) if (k !== 'patient' && k !== 'patient.identifier' && v !== undefined) query[k] = String(v).slice(0, 200);
    accessLog.record({ who: String(res.locals['principal'] ?? ''), view, patient, query });
  };
  r.get('/AuditEvent', async (req, res) => {
    const q = req.query as QueryParams;
    const query = parseAuditQuery(q, hash);
    const bundle = await searchAuditEvents(index, ledger, query, '/fhir');
    record(res, 'fhir AuditEvent search', q, query.filter.patient);
    send(res, bundle);
  });
  r.get('/Consent', async (req, res) => {
    const q = req.query as QueryParams;
    const bundle = await searchConsents(index, q, hash, '/fhir');
    record(res, 'fhir Consent search', q, patientOf(q, hash));
    send(res, bundle);
  });
  return r;
}
