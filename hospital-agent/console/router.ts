// One job: the console's HTTP routes: sign-in into a session, CSRF checks, security headers, the access log, and each view.
import express, { type NextFunction, type Request, type RequestHandler, type Response, type Router } from 'express';
import helmet from 'helmet';
import { buildProof, verifyLedger, withSnapshotSource } from '../../ledger/index.ts';
import { roleAllows, type Authenticator } from '../api/auth.ts';
import { toAgentError } from '../api/http.ts';
import { AgentError } from '../errors.ts';
import { CONSOLE_CSS, CONSOLE_ICON, CONSOLE_JS, htmxScript } from './assets.ts';
import type { ConsoleDeps, LastVerification, ViewContext } from './context.ts';
import { html, type SafeHtml } from './html.ts';
import { page } from './layout.ts';
import { sameToken, SessionStore, type Session } from './sessions.ts';
import { allExchanges, csvField, EXPORT_COLUMNS, exchangesView, exchangeView, exportRecord } from './views/exchanges.ts';
import { exchangeFilter, href } from './views/filters.ts';
import { CLAIM_ID, claimsView, claimView } from './views/claims.ts';
import { PRESCRIPTION_ID, prescriptionsView, prescriptionView } from './views/prescriptions.ts';
import { accessView, auditView, integrityView, overviewView, settlementsView } from './views/ledger.ts';
import { consentsView, reportView } from './views/patients.ts';

/** The session cookie (Path=/console, HttpOnly, SameSite=Strict, Secure over https). */
export const SESSION_COOKIE = 'hie_console';
/** The sign-in form's double-submit cookie (there is no session yet to hold its token). */
export const SIGNIN_COOKIE = 'hie_console_signin';

/** The Content-Security-Policy of every console answer: only the agent's own scripts and styles, nothing inline. */
export const CONSOLE_CSP = {
  'default-src': ["'none'"],
  'script-src': ["'self'"],
  'style-src': ["'self'"],
  'img-src': ["'self'"],
  'connect-src': ["'self'"],
  'form-action': ["'self'"],
  'frame-ancestors': ["'none'"],
  'base-uri': ["'none'"],
  'object-src': ["'none'"],
};

/** Views a search form may redirect to. */
const SEARCH_VIEWS = ['exchanges', 'consents', 'audit', 'report', 'claims', 'prescriptions'] as const;
/** Fields a search form may carry into the view's URL (the patient only after hashing, as `ph`). */
const SEARCH_FIELDS = ['from', 'to', 'counterparty', 'direction', 'status', 'purpose', 'entity', 'agent', 'outcome', 'subtype', 'ph'] as const;

/** Query parameters the access log records (besides `ph`, recorded as the patient). */
const LOGGED_PARAMS = new Set([
  'from',
  'to',
  'counterparty',
  'direction',
  'status',
  'purpose',
  'entity',
  'agent',
  'outcome',
  'type',
  'subtype',
  'period',
  'after',
  '_cursor',
  '_count',
]);

/** Options of {@link consoleRouter}. */
export interface ConsoleOptions {
  sessions?: SessionStore;
}

function cookies(req: Request): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of String(req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

function setCookie(req: Request, res: Response, name: string, value: string, maxAgeS?: number): void {
  const parts = [`${name}=${value}`, 'Path=/console', 'HttpOnly', 'SameSite=Strict'];
  if (maxAgeS !== undefined) parts.push(`Max-Age=${maxAgeS}`);
  if (req.secure) parts.push('Secure');
  res.append('Set-Cookie', parts.join('; '));
}

/** The query string as plain strings (a repeated key keeps its first value). */
function flatQuery(req: Request): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.query)) {
    const s = Array.isArray(v) ? v[0] : v;
    if (typeof s === 'string') out[k] = s;
  }
  return out;
}

/**
 * The compliance console, served under /console by the agent for its own
 * hospital. Sign in with a `compliance` (or `admin`) API token: the token is
 * checked by the API's {@link Authenticator} (same limiter) and exchanged for
 * a server-side session. Every POST carries the session's CSRF token; every
 * answer carries a strict CSP; every view is recorded in the access log
 * before it is answered. A patient id typed into a form is hashed at once and
 * the browser is redirected to a URL that names only the hash.
 */
export function consoleRouter(deps: ConsoleDeps, options: ConsoleOptions = {}): (auth: Authenticator) => Router {
  const sessions = options.sessions ?? new SessionStore();
  const now = deps.now ?? (() => new Date());
  let last: LastVerification | undefined;
  return (auth) => {
    const r = express.Router();
    r.use(helmet.contentSecurityPolicy({ useDefaults: false, directives: CONSOLE_CSP }));
    r.use((_req, res, next) => {
      res.setHeader('Cache-Control', 'no-store');
      next();
    });
    const form = express.urlencoded({ extended: false, limit: '16kb', parameterLimit: 50 });

    r.get('/static/console.css', (_req, res) => {
      res.type('text/css').setHeader('Cache-Control', 'max-age=300');
      res.send(CONSOLE_CSS);
    });
    r.get('/static/console.js', (_req, res) => {
      res.type('text/javascript').setHeader('Cache-Control', 'max-age=300');
      res.send(CONSOLE_JS);
    });
    r.get('/static/favicon.svg', (_req, res) => {
      res.type('image/svg+xml').setHeader('Cache-Control', 'max-age=3600');
      res.send(CONSOLE_ICON);
    });
    r.get('/static/htmx.min.js', (_req, res) => {
      res.type('text/javascript').setHeader('Cache-Control', 'max-age=3600');
      res.send(htmxScript());
    });

    const signInPage = (req: Request, res: Response, status: number, problem?: SafeHtml): void => {
      const t = SessionStore.token();
      setCookie(req, res, SIGNIN_COOKIE, t, 3600);
      res.status(status).type('html');
      res.send(
        page({
          title: 'Sign in',
          agent: deps.self,
          body: html`${problem ? html`<p class="bad" role="alert">${problem}</p>` : ''}
            <form method="post" action="/console/sign-in">
              <input type="hidden" name="_csrf" value="${t}" />
              <label>Compliance token <input type="password" name="token" autocomplete="off" required /></label>
              <p><button type="submit">Sign in</button></p>
            </form>
            <p class="note">
              Use an API token with the role <code>compliance</code> (or <code>admin</code>). Every view you open is recorded in the access log.
            </p>`,
        }).text,
      );
    };
    r.get('/sign-in', (req, res) => signInPage(req, res, 200));
    r.post('/sign-in', form, async (req, res) => {
      const body = (req.body ?? {}) as Record<string, unknown>;
      if (!sameToken(typeof body['_csrf'] === 'string' ? body['_csrf'] : undefined, cookies(req)[SIGNIN_COOKIE]))
        throw new AgentError('ERR_CSRF', 'the sign-in form was posted without its CSRF token');
      const token = typeof body['token'] === 'string' ? body['token'].trim() : '';
      const outcome = await auth.authenticate({ headers: { authorization: `Bearer ${token}` }, socket: req.socket });
      if ('error' in outcome) {
        deps.accessLog.record({ who: '(unknown)', view: 'sign-in refused' });
        if (outcome.close) res.setHeader('Connection', 'close');
        throw outcome.error;
      }
      if (!roleAllows(outcome.role, 'compliance')) {
        deps.accessLog.record({ who: outcome.principal, view: 'sign-in refused (role)' });
        throw new AgentError('ERR_FORBIDDEN_ROLE', `this token's role (${outcome.role}) cannot open the console (it needs compliance)`, {
          detail: { role: outcome.role, needed: 'compliance' },
        });
      }
      const s = sessions.create(outcome.principal, outcome.role);
      deps.accessLog.record({ who: s.principal, view: 'sign-in' });
      setCookie(req, res, SESSION_COOKIE, s.id);
      setCookie(req, res, SIGNIN_COOKIE, '', 0);
      res.redirect(303, '/console/');
    });

    // Everything below needs a session.
    const requireSession: RequestHandler = (req, res, next) => {
      const s = sessions.get(cookies(req)[SESSION_COOKIE]);
      if (!s) {
        if (req.method === 'GET') res.redirect(303, '/console/sign-in');
        else next(new AgentError('ERR_UNAUTHORIZED', 'sign in first (the session is missing or expired)'));
        return;
      }
      res.locals['session'] = s;
      res.locals['principal'] = s.principal;
      next();
    };
    const requireCsrf: RequestHandler = (req, res, next) => {
      const s = res.locals['session'] as Session;
      const body = (req.body ?? {}) as Record<string, unknown>;
      const presented = typeof body['_csrf'] === 'string' ? body['_csrf'] : req.get('x-csrf-token');
      if (!sameToken(presented, s.csrf)) next(new AgentError('ERR_CSRF', 'the form was posted without its CSRF token, or with a wrong one'));
      else next();
    };
    r.use(requireSession);

    const ctxOf = (req: Request, res: Response): ViewContext => ({
      deps,
      session: res.locals['session'] as Session,
      query: flatQuery(req),
      last,
      now: now(),
    });
    /** Records the view in the access log (before answering), with the patient hash and the other parameters. */
    const record = (ctx: ViewContext, view: string, extra: Record<string, string> = {}): void => {
      const query: Record<string, string> = { ...extra };
      // Only the parameters the console writes: a clear patient id typed into a URL by hand is never recorded.
      for (const [k, v] of Object.entries(ctx.query)) if (LOGGED_PARAMS.has(k)) query[k] = v.slice(0, 200);
      deps.accessLog.record({ who: ctx.session.principal, view, patient: ctx.query['ph'], query });
    };
    const show = (res: Response, ctx: ViewContext, title: string, active: string, body: SafeHtml): void => {
      res.type('html').send(page({ title, agent: deps.self, session: ctx.session, active, body }).text);
    };
    const view =
      (name: string, title: string, active: string, render: (ctx: ViewContext) => SafeHtml | Promise<SafeHtml>): RequestHandler =>
      async (req, res) => {
        const ctx = ctxOf(req, res);
        await deps.index.refresh();
        const body = await render(ctx);
        record(ctx, name);
        show(res, ctx, title, active, body);
      };

    r.post('/sign-out', form, requireCsrf, (req, res) => {
      const s = res.locals['session'] as Session;
      sessions.end(s.id);
      deps.accessLog.record({ who: s.principal, view: 'sign-out' });
      setCookie(req, res, SESSION_COOKIE, '', 0);
      res.redirect(303, '/console/sign-in');
    });

    // A search form: the typed patient id is hashed here and dropped; the browser goes to a URL naming only the hash.
    r.post('/search', form, requireCsrf, (req, res) => {
      const body = (req.body ?? {}) as Record<string, unknown>;
      const target = String(body['view'] ?? '');
      if (!(SEARCH_VIEWS as readonly string[]).includes(target)) throw new AgentError('ERR_BAD_REQUEST', 'unknown view');
      const q: Record<string, string> = {};
      for (const k of SEARCH_FIELDS) if (typeof body[k] === 'string' && (body[k] as string).trim() !== '') q[k] = (body[k] as string).trim();
      const patient = typeof body['patient'] === 'string' ? body['patient'].trim() : '';
      if (patient !== '') {
        try {
          q['ph'] = deps.hashPatient(patient);
        } catch {
          throw new AgentError('ERR_BAD_REQUEST', 'the patient id must be 1-256 characters');
        }
      }
      res.redirect(303, href(`/console/${target}`, q));
    });

    r.get(
      '/',
      view('overview', 'Overview', '/', (ctx) => overviewView(ctx)),
    );
    r.get('/exchanges', async (req, res) => {
      const ctx = ctxOf(req, res);
      await deps.index.refresh();
      const { body } = exchangesView(ctx);
      record(ctx, 'exchanges');
      show(res, ctx, 'Exchanges', '/exchanges', body);
    });
    const exportRoute =
      (format: 'csv' | 'ndjson'): RequestHandler =>
      async (req, res) => {
        const ctx = ctxOf(req, res);
        await deps.index.refresh();
        const filter = exchangeFilter(ctx.query);
        record(ctx, `exchanges export (${format})`);
        res.status(200);
        res.setHeader('Content-Type', format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8');
        res.setHeader('Content-Disposition', `attachment; filename="exchanges-${deps.self}.${format}"`);
        if (format === 'csv') res.write(`${EXPORT_COLUMNS.join(',')}\r\n`);
        let chunk = '';
        for (const x of allExchanges(ctx, filter)) {
          const rec = exportRecord(x);
          chunk += format === 'csv' ? `${EXPORT_COLUMNS.map((c) => csvField(rec[c])).join(',')}\r\n` : `${JSON.stringify(rec)}\n`;
          if (chunk.length > 64 * 1024) {
            if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve));
            chunk = '';
          }
        }
        res.end(chunk);
      };
    r.get('/exchanges.csv', exportRoute('csv'));
    r.get('/exchanges.ndjson', exportRoute('ndjson'));
    r.get('/exchanges/:id', async (req, res) => {
      const id = String(req.params['id']);
      if (!/^[A-Za-z0-9][A-Za-z0-9_-]{7,63}$/.test(id)) throw new AgentError('ERR_NOT_FOUND', 'no such exchange');
      const ctx = ctxOf(req, res);
      await deps.index.refresh();
      const body = await exchangeView(ctx, id);
      if (!body) throw new AgentError('ERR_NOT_FOUND', 'no such exchange in this ledger');
      const row = deps.index.exchange(id);
      deps.accessLog.record({ who: ctx.session.principal, view: 'exchange', patient: row?.patient, query: { exchange: id } });
      show(res, ctx, `Exchange ${id}`, '/exchanges', body);
    });
    r.get('/exchanges/:id/proof', async (req, res) => {
      const id = String(req.params['id']);
      if (!/^[A-Za-z0-9][A-Za-z0-9_-]{7,63}$/.test(id)) throw new AgentError('ERR_NOT_FOUND', 'no such exchange');
      const s = res.locals['session'] as Session;
      const built = await buildProof(deps.ledger._store, { exchange: id });
      if (built.file.entries.length === 0)
        throw new AgentError('ERR_NOT_FOUND', 'nothing of this exchange can be proven yet (no entry, or no checkpoint covers it)');
      deps.accessLog.record({ who: s.principal, view: 'proof', patient: deps.index.exchange(id)?.patient, query: { exchange: id } });
      res.setHeader('Content-Disposition', `attachment; filename="proof-${id}.json"`);
      if (built.unproved.length > 0) res.setHeader('X-Unproved-Entries', String(built.unproved.length));
      res.type('application/json').send(`${JSON.stringify(built.file, null, 2)}\n`);
    });
    r.get(
      '/claims',
      view('claims', 'Claims', '/claims', (ctx) => claimsView(ctx)),
    );
    r.get('/claims/:id', async (req, res) => {
      const id = String(req.params['id']);
      if (!CLAIM_ID.test(id)) throw new AgentError('ERR_NOT_FOUND', 'no such claim');
      const ctx = ctxOf(req, res);
      await deps.index.refresh();
      const found = await claimView(ctx, id);
      if (!found) throw new AgentError('ERR_NOT_FOUND', 'no such claim in this agent or its ledger');
      deps.accessLog.record({ who: ctx.session.principal, view: 'claim', patient: found.patient, query: { claim: id } });
      show(res, ctx, `Claim ${id}`, '/claims', found.body);
    });
    r.get(
      '/prescriptions',
      view('prescriptions', 'Prescriptions', '/prescriptions', (ctx) => prescriptionsView(ctx)),
    );
    r.get('/prescriptions/:id', async (req, res) => {
      const id = String(req.params['id']);
      if (!PRESCRIPTION_ID.test(id)) throw new AgentError('ERR_NOT_FOUND', 'no such prescription');
      const ctx = ctxOf(req, res);
      await deps.index.refresh();
      const found = await prescriptionView(ctx, id);
      if (!found) throw new AgentError('ERR_NOT_FOUND', 'no such prescription in this agent or its ledger');
      deps.accessLog.record({ who: ctx.session.principal, view: 'prescription', patient: found.patient, query: { prescription: id } });
      show(res, ctx, `Prescription ${id}`, '/prescriptions', found.body);
    });
    r.get(
      '/consents',
      view('consents', 'Consents', '/consents', (ctx) => consentsView(ctx)),
    );
    r.get(
      '/audit',
      view('audit', 'Audit events', '/audit', (ctx) => auditView(ctx)),
    );
    r.get(
      '/settlements',
      view('settlements', 'Settlements', '/settlements', (ctx) => settlementsView(ctx)),
    );
    r.get(
      '/integrity',
      view('integrity', 'Integrity', '/integrity', (ctx) => integrityView(ctx)),
    );
    r.post('/integrity/verify', form, requireCsrf, async (req, res) => {
      const s = res.locals['session'] as Session;
      deps.accessLog.record({ who: s.principal, view: 'verify' });
      const result = await withSnapshotSource(deps.ledger._store, (source) => verifyLedger(source, { trust: deps.trust(), graceSeconds: deps.graceSeconds }));
      last = { at: now().toISOString(), by: s.principal, result };
      if (req.get('hx-request') === 'true') {
        const ctx = ctxOf(req, res);
        show(res, ctx, 'Integrity', '/integrity', await integrityView(ctx));
      } else res.redirect(303, '/console/integrity');
    });
    r.get(
      '/report',
      view('patient access report', 'Patient access report', '/report', (ctx) => reportView(ctx)),
    );
    r.get(
      '/access',
      view('access log', 'Access log', '/access', (ctx) => accessView(ctx)),
    );
    r.use((_req: Request, _res: Response, next: NextFunction) => next(new AgentError('ERR_NOT_FOUND', 'no such console page')));
    // Errors as a page with the code (a sign-in refusal as the sign-in form again).
    r.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
      const e = toAgentError(err);
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const message = html`${e.message} (${e.code})`;
      if (req.path === '/sign-in') {
        signInPage(req, res, e.status, message);
        return;
      }
      const session = res.locals['session'] as Session | undefined;
      res.status(e.status).type('html');
      res.send(
        page({
          title: `Refused: ${e.code}`,
          agent: deps.self,
          session,
          body: html`<p class="bad" role="alert">${message}</p>
            <p><a href="/console/">Back to the overview</a></p>`,
        }).text,
      );
    });
    return r;
  };
}
