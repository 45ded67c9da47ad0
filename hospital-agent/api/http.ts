import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import express, { type ErrorRequestHandler, type NextFunction, type Request, type Response, type Router } from 'express';
import helmet from 'helmet';
import { AGENT_ERRORS, AgentError, isNoSpace } from '../errors.ts';
import { Authenticator, bearerAuth, forbiddenRole, roleAllows, type ApiToken, type AuthOptions } from './auth.ts';

/** Largest JSON request body the API parses. */
export const DEFAULT_JSON_LIMIT = '1mb';

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** Minimal logger interface (pino-compatible). */
export interface ApiLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  /** pino's level check: when present, request lines are built only if `info` is on. */
  isLevelEnabled?(level: string): boolean;
}

/** Options of {@link createApiApp}. */
export interface ApiAppOptions {
  tokens: readonly ApiToken[];
  logger: ApiLogger;
  /** Routers mounted under /v1, behind authentication. */
  v1: Router;
  /** The OpenAPI document served at /openapi.json. */
  openapi: object;
  /** Unauthenticated routes (/healthz, /metrics) mounted at the root. */
  open?: Router;
  /** The limiter's settings (see {@link Authenticator}); defaults otherwise. */
  auth?: AuthOptions;
  /**
   * Asked before every authenticated write (any method but GET and HEAD) under /v1; it may wait (bounded), and when
   * it resolves to an error the write gets that error, with a Retry-After.
   */
  hold?: () => Promise<{ error: AgentError; retryAfterSeconds: number } | undefined> | undefined;
  /** Routers mounted under /fhir (the audit API), behind authentication with the role `compliance` (or `admin`); errors are OperationOutcomes. */
  fhir?: Router;
  /** The compliance console, mounted under /console; it signs in with the same tokens (and limiter) into its own sessions. */
  console?: (auth: Authenticator) => Router;
}

/** The JSON body of every error answer. */
export interface ErrorBody {
  error: { code: string; message: string; requestId: string; detail?: Record<string, unknown> };
}

/** Writes a JSON answer (as express `res.json` would, without an ETag); works on a plain ServerResponse too. */
export function writeJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.statusCode = status;
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(text);
}

/** The JSON body of an error answer. */
function errorBody(err: AgentError, requestId: string): ErrorBody {
  const body: ErrorBody = { error: { code: err.code, message: err.message, requestId } };
  if (err.detail) body.error.detail = err.detail;
  return body;
}

/** Code system of the agent's error codes in an OperationOutcome (`issue[].details.coding`). */
export const AGENT_ERROR_SYSTEM = 'urn:hie:agent-error';
/** Extension URL carrying the request id in an OperationOutcome. */
export const REQUEST_ID_EXTENSION = 'urn:hie:request-id';
const FHIR_JSON = 'application/fhir+json; charset=utf-8';

/** FHIR `OperationOutcome.issue.code` for an agent error code. */
function issueType(code: string, status: number): string {
  if (code === 'ERR_FHIR_PATIENT_UNRESOLVED' || code === 'ERR_FHIR_REFERENCE_UNRESOLVED') return 'not-found';
  if (code === 'ERR_FHIR_PATIENT_MISSING') return 'required';
  if (code.startsWith('ERR_FHIR_PATIENT_')) return 'business-rule';
  if (code === 'ERR_DICOM_PATIENT_MISMATCH') return 'business-rule';
  if (code === 'ERR_INVALID_FHIR' || code === 'ERR_FHIR_INVALID' || code === 'ERR_DICOM_INVALID' || code === 'ERR_BAD_REQUEST') return 'invalid';
  if (status === 401) return 'login';
  if (status === 403) return 'forbidden';
  if (status === 404) return 'not-found';
  if (status === 409) return 'conflict';
  if (status === 413) return 'too-costly';
  if (status === 429) return 'throttled';
  if (status >= 500) return 'exception';
  return 'processing';
}

/**
 * An {@link AgentError} as a FHIR R4 OperationOutcome: one issue per
 * problem (`err.issues`, each with its FHIRPath `expression`) or one for the
 * error itself; the agent's code in `details.coding` ({@link AGENT_ERROR_SYSTEM}),
 * the request id in an extension.
 */
export function operationOutcome(err: AgentError, requestId: string): Record<string, unknown> {
  const issues = err.issues ?? [{ code: err.code, message: err.message }];
  return {
    resourceType: 'OperationOutcome',
    extension: [{ url: REQUEST_ID_EXTENSION, valueString: requestId }],
    issue: issues.map((i) => ({
      severity: err.status >= 500 ? 'fatal' : 'error',
      code: ('type' in i && i.type) || issueType(i.code, AGENT_ERRORS[i.code].status),
      details: { coding: [{ system: AGENT_ERROR_SYSTEM, code: i.code }], text: i.message },
      ...('expression' in i ? { expression: [i.expression] } : {}),
    })),
  };
}

/**
 * True when an error is answered as an OperationOutcome: it names problems
 * in a FHIR resource (always), or the client asked for FHIR (`Accept`
 * names application/fhir+json); every other answer keeps the JSON error body.
 */
export function answersOutcome(req: IncomingMessage, err: AgentError): boolean {
  const url = (req as Partial<Request>).originalUrl ?? req.url ?? '';
  return err.issues !== undefined || url.startsWith('/fhir/') || /application\/fhir\+json/i.test(String(req.headers.accept ?? ''));
}

/** Sends an {@link AgentError} with its status: as JSON, or as an OperationOutcome (see {@link answersOutcome}) when `req` is given. */
export function sendError(
  res: ServerResponse,
  err: AgentError,
  requestId = String((res as Response).locals?.['requestId'] ?? ''),
  req?: IncomingMessage,
): void {
  if (req && answersOutcome(req, err)) {
    const text = JSON.stringify(operationOutcome(err, requestId));
    res.statusCode = err.status;
    res.setHeader('Content-Type', FHIR_JSON);
    res.setHeader('Content-Length', Buffer.byteLength(text));
    res.end(text);
    return;
  }
  writeJson(res, err.status, errorBody(err, requestId));
}

/** Maps anything thrown in a handler to an AgentError (body-parser errors included). */
export function toAgentError(err: unknown): AgentError {
  if (err instanceof AgentError) return err;
  const e = err as { type?: string; status?: number; expose?: boolean };
  if (e?.type === 'entity.too.large') return new AgentError('ERR_PAYLOAD_TOO_LARGE', 'request body is too large');
  if (e?.type === 'entity.parse.failed') return new AgentError('ERR_BAD_REQUEST', 'request body is not valid JSON');
  if (e?.type === 'encoding.unsupported' || e?.type === 'charset.unsupported') return new AgentError('ERR_UNSUPPORTED_MEDIA_TYPE', 'unsupported body encoding');
  if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500 && e.expose) return new AgentError('ERR_BAD_REQUEST', 'malformed request');
  // The router marks a path parameter it cannot percent-decode (e.g. '/v1/inbox/%') as 400 without `expose`.
  if (err instanceof URIError && e.status === 400) return new AgentError('ERR_BAD_REQUEST', 'malformed percent-encoding in the path');
  if (isNoSpace(err)) return new AgentError('ERR_INSUFFICIENT_STORAGE', "the agent's data directory is full; nothing was stored", { cause: err });
  return new AgentError('ERR_INTERNAL', 'internal error', { cause: err });
}

/** What a {@link FastRoute} answers with. */
export interface FastAnswer {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/**
 * A route served straight from node:http, outside express, with the same
 * security headers, request id, authentication, errors and log line as every
 * other route. For the one hot route, `POST /v1/exchanges` (every exchange an
 * EHR submits): express's per-request work costs as much as the agent's own.
 * Only the exact method and path (no query string) take it.
 */
export interface FastRoute {
  method: string;
  path: string;
  /** The route's name in the request log (as express would name it). */
  route: string;
  /** Served without authentication (like /healthz); the principal is then ''. */
  open?: boolean;
  handle(req: IncomingMessage, principal: string): Promise<FastAnswer>;
}

/** The API's HTTP request listener: fast routes first, everything else through express. */
export type ApiHandler = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * The local API: an express app (helmet, request ids (`X-Request-Id`, echoed
 * or generated), bearer auth on /v1 (wrong tokens past a per-address limit are slowed and refused, valid ones always served), JSON errors
 * with codes from the registry, a JSON 404, and /openapi.json) behind a
 * listener that serves the {@link FastRoute}s with the same pieces.
 */
export function createApiHandler(options: ApiAppOptions & { fast?: readonly FastRoute[] }): ApiHandler {
  const security = helmet();
  // helmet's defaults set the same headers on every response, whatever the request: recorded once for the fast
  // routes, which then set them without running its eleven middlewares each time.
  // (A fresh response has none of the headers helmet removes, so only what it sets is kept: name, value, name, ...)
  const securityHeaders: string[] = [];
  security(
    { headers: {} } as IncomingMessage,
    { setHeader: (name: string, value: string) => securityHeaders.push(name, value), removeHeader: () => undefined } as unknown as ServerResponse,
    () => undefined,
  );
  const auth = new Authenticator(options.tokens, options.auth);
  const logRequests = !options.logger.isLevelEnabled || options.logger.isLevelEnabled('info');
  // Paths only, never query strings or bodies: they may name a patient.
  const requestId = (req: IncomingMessage, res: ServerResponse, route: () => string, principal: () => unknown): string => {
    const incoming = req.headers['x-request-id'];
    const id = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    res.setHeader('X-Request-Id', id);
    if (logRequests) {
      const started = process.hrtime.bigint();
      res.on('finish', () => {
        options.logger.info(
          {
            requestId: id,
            method: req.method,
            route: route(),
            status: res.statusCode,
            ms: Number(process.hrtime.bigint() - started) / 1e6,
            principal: principal(),
          },
          'api request',
        );
      });
    }
    return id;
  };
  const authFailed = (req: IncomingMessage, id: string, reason: string): void =>
    options.logger.warn({ requestId: id, ip: req.socket.remoteAddress, reason }, 'api authentication failed');
  const internal = (id: string, route: string, err: unknown): void =>
    options.logger.error({ requestId: id, route, err: { name: (err as Error)?.name, message: (err as Error)?.message } }, 'api internal error');

  const app = express();
  app.disable('x-powered-by');
  // Answers are small, dynamic JSON: an ETag (a SHA-1 of every body) buys nothing.
  app.set('etag', false);
  app.set('trust proxy', false);
  app.use(security);
  app.use((req: Request, res: Response, next: NextFunction) => {
    // A route's pattern (`/inbox/:id`), never the path itself: a path no route matched may carry anything,
    // a patient id among it.
    res.locals['requestId'] = requestId(
      req,
      res,
      () => (req.route?.path as string | undefined) ?? '(no route)',
      () => res.locals['principal'],
    );
    next();
  });
  if (options.open) app.use(options.open);
  app.get('/openapi.json', (_req, res) => {
    res.json(options.openapi);
  });
  const onAuthFailure = (req: Request, reason: string): void => authFailed(req, String(req.res?.locals['requestId'] ?? ''), reason);
  const holdWrites = async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    const held = req.method === 'GET' || req.method === 'HEAD' ? undefined : await options.hold?.();
    if (held) res.setHeader('Retry-After', String(held.retryAfterSeconds));
    next(held?.error);
  };
  app.use('/v1', ...bearerAuth(auth, { onFailure: onAuthFailure, role: 'ehr' }), holdWrites, options.v1);
  if (options.fhir) app.use('/fhir', ...bearerAuth(auth, { onFailure: onAuthFailure, role: 'compliance' }), options.fhir);
  if (options.console) app.use('/console', options.console(auth));
  app.use((_req: Request, _res: Response, next: NextFunction) => {
    next(new AgentError('ERR_NOT_FOUND', 'no such route'));
  });
  const onError: ErrorRequestHandler = (err, req, res, _next) => {
    const e = toAgentError(err);
    if (e.code === 'ERR_INTERNAL') internal(String(res.locals['requestId'] ?? ''), req.path, err);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    sendError(res, e, String(res.locals['requestId'] ?? ''), req);
  };
  app.use(onError);

  const fast = new Map((options.fast ?? []).map((f) => [`${f.method} ${f.path}`, f]));
  // Every header of a fast answer goes out in one writeHead (a flat list), without a setHeader per header.
  const answerFast = (
    res: ServerResponse,
    status: number,
    body: unknown,
    head: string[],
    extra: Record<string, string> = {},
    type = 'application/json; charset=utf-8',
  ): void => {
    const text = JSON.stringify(body);
    const headers = [...head];
    for (const [name, value] of Object.entries(extra)) headers.push(name, value);
    headers.push('Content-Type', type, 'Content-Length', String(Buffer.byteLength(text)));
    res.writeHead(status, headers);
    res.end(text);
  };
  const serveFast = async (route: FastRoute, req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let principal: string | undefined;
    let closeAfter = false;
    const incoming = req.headers['x-request-id'];
    const id = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    const head = [...securityHeaders, 'X-Request-Id', id];
    if (logRequests) {
      const started = process.hrtime.bigint();
      res.on('finish', () => {
        options.logger.info(
          { requestId: id, method: req.method, route: route.route, status: res.statusCode, ms: Number(process.hrtime.bigint() - started) / 1e6, principal },
          'api request',
        );
      });
    }
    try {
      if (route.open) principal = '';
      else {
        const outcome = await auth.authenticate(req);
        if ('error' in outcome) {
          authFailed(req, id, outcome.reason);
          if (outcome.close) closeAfter = true;
          throw outcome.error;
        }
        principal = outcome.principal;
        // Every fast route but the open ones is part of the EHR's API (/v1).
        if (!roleAllows(outcome.role, 'ehr')) throw forbiddenRole(outcome.role, 'ehr');
        const held = req.method === 'GET' || req.method === 'HEAD' ? undefined : await options.hold?.();
        if (held) {
          head.push('Retry-After', String(held.retryAfterSeconds));
          throw held.error;
        }
      }
      const answer = await route.handle(req, principal);
      answerFast(res, answer.status, answer.body, head, answer.headers);
    } catch (err) {
      const e = toAgentError(err);
      if (e.code === 'ERR_INTERNAL') internal(id, route.route, err);
      if (res.headersSent) res.destroy();
      // Refused before the whole body was read (consent, size, a bad header): the rest of it is not read either,
      // so the connection ends with this answer, and the client knows not to reuse it.
      else {
        const close = req.complete && !closeAfter ? head : [...head, 'Connection', 'close'];
        if (answersOutcome(req, e)) answerFast(res, e.status, operationOutcome(e, id), close, {}, FHIR_JSON);
        else answerFast(res, e.status, errorBody(e, id), close);
      }
    }
  };
  return (req, res) => {
    const route = fast.size > 0 ? fast.get(`${req.method} ${req.url}`) : undefined;
    if (!route) {
      app(req, res);
      return;
    }
    void serveFast(route, req, res);
  };
}

/** {@link createApiHandler} as an app that can listen (`app.listen(port, host)` starts a node:http server). */
export function createApiApp(options: ApiAppOptions & { fast?: readonly FastRoute[] }): ApiHandler & { listen(port: number, host?: string): Server } {
  const handler = createApiHandler(options);
  return Object.assign(handler, { listen: (port: number, host?: string): Server => createServer(handler).listen(port, host) });
}

/** Error responses of the registry, for the OpenAPI document. */
export function errorCodesForOpenApi(): Array<{ code: string; status: number; description: string }> {
  return Object.entries(AGENT_ERRORS).map(([code, v]) => ({ code, status: v.status, description: v.description }));
}
