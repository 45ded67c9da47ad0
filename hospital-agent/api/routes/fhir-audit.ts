import express, { type Response, type Router } from 'express';
import type { Ledger } from '../../../ledger/index.ts';
import { parseAuditQuery, searchAuditEvents, searchConsents, type PatientHasher, type QueryParams } from '../../console/audit-query.ts';
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
 * answers name the patient only by its keyed hash.
 */
export function fhirAuditRoutes(index: LedgerIndex, ledger: Ledger, hash: PatientHasher): Router {
  const r = express.Router();
  r.get('/AuditEvent', async (req, res) => {
    const query = parseAuditQuery(req.query as QueryParams, hash);
    send(res, await searchAuditEvents(index, ledger, query, '/fhir'));
  });
  r.get('/Consent', async (req, res) => {
    send(res, await searchConsents(index, req.query as QueryParams, hash, '/fhir'));
  });
  return r;
}
