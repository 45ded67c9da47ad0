import { randomUUID } from 'node:crypto';
import express, { type ErrorRequestHandler, type Express, type NextFunction, type Request, type Response, type Router } from 'express';
import helmet from 'helmet';
import { AGENT_ERRORS, AgentError } from '../errors.ts';
import { bearerAuth, type ApiToken } from './auth.ts';

/** Largest JSON request body the API parses. */
export const DEFAULT_JSON_LIMIT = '1mb';

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** Minimal logger interface (pino-compatible). */
export interface ApiLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
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
  auth?: { failuresPerWindow?: number; windowMs?: number };
}

/** The JSON body of every error answer. */
export interface ErrorBody {
  error: { code: string; message: string; requestId: string; detail?: Record<string, unknown> };
}

/** Sends an {@link AgentError} as JSON with its status. */
export function sendError(res: Response, err: AgentError): void {
  const body: ErrorBody = { error: { code: err.code, message: err.message, requestId: String(res.locals['requestId'] ?? '') } };
  if (err.detail) body.error.detail = err.detail;
  res.status(err.status).json(body);
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
  return new AgentError('ERR_INTERNAL', 'internal error', { cause: err });
}

/**
 * The local API's express app: helmet, request ids (`X-Request-Id`, echoed or
 * generated), bearer auth with rate-limited failures on /v1, JSON errors with
 * codes from the registry, a JSON 404, and /openapi.json.
 */
export function createApiApp(options: ApiAppOptions): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  app.use(helmet());
  app.use((req: Request, res: Response, next: NextFunction) => {
    const incoming = req.get('x-request-id');
    const id = incoming && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    res.locals['requestId'] = id;
    res.setHeader('X-Request-Id', id);
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      // Paths only, never query strings or bodies: they may name a patient.
      options.logger.info(
        { requestId: id, method: req.method, route: req.route?.path ?? req.path, status: res.statusCode, ms: Number(process.hrtime.bigint() - started) / 1e6, principal: res.locals['principal'] },
        'api request',
      );
    });
    next();
  });
  if (options.open) app.use(options.open);
  app.get('/openapi.json', (_req, res) => {
    res.json(options.openapi);
  });
  app.use(
    '/v1',
    ...bearerAuth(options.tokens, {
      ...options.auth,
      onFailure: (req, reason) => options.logger.warn({ requestId: req.res?.locals['requestId'], ip: req.ip, reason }, 'api authentication failed'),
    }),
    options.v1,
  );
  app.use((_req: Request, _res: Response, next: NextFunction) => {
    next(new AgentError('ERR_NOT_FOUND', 'no such route'));
  });
  const onError: ErrorRequestHandler = (err, req, res, _next) => {
    const e = toAgentError(err);
    if (e.code === 'ERR_INTERNAL') {
      options.logger.error({ requestId: res.locals['requestId'], route: req.path, err: { name: (err as Error)?.name, message: (err as Error)?.message } }, 'api internal error');
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    sendError(res, e);
  };
  app.use(onError);
  return app;
}

/** Error responses of the registry, for the OpenAPI document. */
export function errorCodesForOpenApi(): Array<{ code: string; status: number; description: string }> {
  return Object.entries(AGENT_ERRORS).map(([code, v]) => ({ code, status: v.status, description: v.description }));
}
