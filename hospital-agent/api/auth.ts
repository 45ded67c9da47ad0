import { createHash, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ipKeyGenerator, MemoryStore, rateLimit } from 'express-rate-limit';
import { AgentError } from '../errors.ts';

/** Failed authentications allowed per client address per window before it gets 429. */
export const DEFAULT_AUTH_FAILURES_PER_WINDOW = 20;
/** Window of the failed-authentication limit. */
export const DEFAULT_AUTH_WINDOW_MS = 60_000;
/** Shortest accepted API token. */
export const MIN_TOKEN_LENGTH = 32;

/** A named API token (the name is what the log records, never the token). */
export interface ApiToken {
  name: string;
  token: string;
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** Finds the token a presented bearer string matches, comparing digests in constant time. */
export function matchToken(tokens: readonly ApiToken[], presented: string): ApiToken | undefined {
  const d = digest(presented);
  let found: ApiToken | undefined;
  for (const t of tokens) {
    // Compare against every token so timing does not reveal which one matched.
    if (timingSafeEqual(digest(t.token), d)) found = t;
  }
  return found;
}

/**
 * Bearer-token authentication for the local API: `Authorization: Bearer
 * <token>`. Failures are counted per client address; past the limit the
 * address gets 429 ERR_RATE_LIMITED until the window passes. On success the
 * token's name is stored in `res.locals.principal`.
 */
export function bearerAuth(
  tokens: readonly ApiToken[],
  options: { failuresPerWindow?: number; windowMs?: number; onFailure?: (req: Request, reason: string) => void } = {},
): RequestHandler[] {
  const limit = options.failuresPerWindow ?? DEFAULT_AUTH_FAILURES_PER_WINDOW;
  const store = new MemoryStore();
  const keyOf = (req: Request): string => ipKeyGenerator(req.ip ?? '');
  // Only failed authentications are counted (check() increments the store). Counting every request up front
  // and un-counting successes afterwards would refuse valid requests whenever more than `limit` were in flight
  // at once (a burst of uploads). An address over the limit is refused even with a valid token, so guesses
  // made while blocked are never evaluated.
  const limiter = rateLimit({
    windowMs: options.windowMs ?? DEFAULT_AUTH_WINDOW_MS,
    limit,
    store,
    keyGenerator: keyOf,
    skip: async (req) => ((await store.get(keyOf(req)))?.totalHits ?? 0) < limit,
    standardHeaders: 'draft-7',
    legacyHeaders: false,
    handler: (_req, _res, next) => next(new AgentError('ERR_RATE_LIMITED', 'too many failed authentication attempts; retry later')),
  });
  const fail = (req: Request, next: NextFunction, err: AgentError): void => {
    void store.increment(keyOf(req)).then(
      () => next(err),
      () => next(err),
    );
  };
  const check = (req: Request, res: Response, next: NextFunction): void => {
    const header = req.get('authorization') ?? '';
    const m = /^Bearer ([\x21-\x7e]{1,512})$/.exec(header);
    if (!m) {
      options.onFailure?.(req, header ? 'malformed' : 'missing');
      fail(req, next, new AgentError('ERR_UNAUTHORIZED', 'missing or malformed bearer token'));
      return;
    }
    const token = matchToken(tokens, m[1] as string);
    if (!token) {
      options.onFailure?.(req, 'unknown token');
      fail(req, next, new AgentError('ERR_UNAUTHORIZED', 'invalid bearer token'));
      return;
    }
    res.locals['principal'] = token.name;
    next();
  };
  return [limiter, check];
}
