import { existsSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import express, { type Express } from 'express';
import helmet from 'helmet';
import { verifyIssuerDirectory, type VerifiedIssuerDirectory } from '../certs/shc/index.ts';
import type { RelayErrorCode } from './errors.ts';

/**
 * The public certificate listener (plain HTTPS, no client certificate): the
 * federation's signed issuer directory, each issuer's SMART Health Card JWKS
 * and revocation lists at the spec's well-known URLs under
 * `iss = <base>/issuers/<id>`, and the static verifier page (/verify/).
 */

/** The verifier page's files (plain JS, no CDN: it works offline once loaded). */
// From the sources: next to this module; from the build (dist/relay/): the package's relay/verifier/ (package.json "files").
const VERIFIER_DIR =
  [new URL('./verifier/', import.meta.url), new URL('../../relay/verifier/', import.meta.url)].find((u) => existsSync(fileURLToPath(u))) ??
  new URL('./verifier/', import.meta.url);
const STATIC: Record<string, { file: URL; type: string }> = {
  '': { file: new URL('index.html', VERIFIER_DIR), type: 'text/html; charset=utf-8' },
  'verifier.js': { file: new URL('verifier.js', VERIFIER_DIR), type: 'text/javascript; charset=utf-8' },
  'jsqr.js': { file: new URL(import.meta.resolve('jsqr')), type: 'text/javascript; charset=utf-8' },
};

/** What the app reads: the signed issuer directory file, re-read when it changes, and the CA it is checked against. */
export interface IssuersAppOptions {
  file: string;
  caPem: () => string;
}

/** The express app of the certificate listener. */
export function issuersApp(options: IssuersAppOptions): Express {
  let cached: { mtimeMs: number; size: number; verified: VerifiedIssuerDirectory } | undefined;
  const current = async (): Promise<VerifiedIssuerDirectory | undefined> => {
    let st;
    try {
      st = statSync(options.file);
    } catch {
      return cached?.verified;
    }
    if (cached && cached.mtimeMs === st.mtimeMs && cached.size === st.size) return cached.verified;
    try {
      const verified = await verifyIssuerDirectory(readFileSync(options.file, 'utf8'), { caPem: options.caPem() });
      // Never step back to an older directory.
      if (!cached || verified.directory.sequence >= cached.verified.directory.sequence) cached = { mtimeMs: st.mtimeMs, size: st.size, verified };
    } catch {
      // A file that fails leaves the previous directory in force (as the member directory does).
    }
    return cached?.verified;
  };
  const app = express();
  app.disable('x-powered-by');
  app.use(
    helmet({
      contentSecurityPolicy: { directives: { defaultSrc: ["'self'"], imgSrc: ["'self'", 'blob:', 'data:'], scriptSrc: ["'self'"], connectSrc: ["'self'"] } },
    }),
  );
  const notFound = (res: express.Response, what: string): void => {
    res.status(404).json({ error: `${what} not found`, code: 'ERR_RELAY_ISSUER_NOT_FOUND' satisfies RelayErrorCode });
  };
  // SMART Health Cards: issuer keys and CRLs are fetched cross-origin by verifier apps, so CORS is open (spec "Determining keys").
  app.use((_req, res, next) => {
    res.setHeader('Access-Control-Allow-Origin', '*');
    next();
  });
  app.get('/.well-known/hie-issuers.jws', async (_req, res) => {
    const d = await current();
    if (!d) return notFound(res, 'issuer directory');
    res.type('application/jose').send(`${d.jws}\n`);
  });
  app.get('/issuers/:id/.well-known/jwks.json', async (req, res) => {
    const i = (await current())?.byId.get(req.params.id);
    if (!i) return notFound(res, 'issuer');
    res.json({ keys: i.keys });
  });
  app.get('/issuers/:id/.well-known/crl/:file', async (req, res) => {
    const i = (await current())?.byId.get(req.params.id);
    const kid = req.params.file.replace(/\.json$/, '');
    const crl = i?.crls.find((c) => c.kid === kid);
    if (!crl) return notFound(res, 'revocation list');
    res.json(crl);
  });
  app.get(/^\/verify\/([a-z.]*)$/, (req, res) => {
    const s = STATIC[(req.params as Record<string, string>)[0] ?? ''];
    if (!s) return notFound(res, 'file');
    res.type(s.type).send(readFileSync(fileURLToPath(s.file)));
  });
  app.get('/verify', (_req, res) => res.redirect(301, '/verify/'));
  app.use((_req, res) => notFound(res, 'path'));
  return app;
}
