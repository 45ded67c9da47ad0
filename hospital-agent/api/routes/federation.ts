import express, { type Router } from 'express';
import type { FederationDocuments, SelfStanding } from '../../federation/index.ts';

/**
 * /v1/federation: what this agent holds of the federation (the CRL and member directory in force, and whether its
 * own certificate is revoked), for hospital IT asking why a send or a consent was refused.
 */
export function federationRoutes(federation: FederationDocuments, standing: SelfStanding, serial: () => string): Router {
  const r = express.Router();
  r.get('/federation', (_req, res) => {
    const crl = federation.crl;
    const d = federation.directory;
    res.json({
      certificate: { serial: serial(), revoked: standing.revoked },
      crl: crl
        ? {
            crlNumber: crl.crlNumber ?? null,
            thisUpdate: crl.thisUpdate.toISOString(),
            nextUpdate: crl.nextUpdate?.toISOString() ?? null,
            expired: federation.crlExpired(),
            revoked: crl.revoked.size,
          }
        : null,
      directory: d ? { sequence: d.directory.sequence, issuedAt: d.directory.issuedAt, signer: d.signerSerial, members: d.directory.members } : null,
    });
  });
  return r;
}
