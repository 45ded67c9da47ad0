import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
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
  return tokenMatcher(tokens)(presented);
}

/** {@link matchToken} with the tokens' digests taken once. */
function tokenMatcher(tokens: readonly ApiToken[]): (presented: string) => ApiToken | undefined {
  const known = tokens.map((t) => ({ token: t, digest: digest(t.token) }));
  return (presented) => {
    const d = digest(presented);
    let found: ApiToken | undefined;
    for (const k of known) {
      // Compare against every token so timing does not reveal which one matched.
      if (timingSafeEqual(k.digest, d)) found = k.token;
    }
    return found;
  };
}

/** Where a request comes from, as authentication sees it (an express Request or a plain IncomingMessage). */
export interface AuthRequest {
  headers: IncomingHttpHeaders;
  socket: { remoteAddress?: string | undefined };
}

/** What {@link Authenticator.authenticate} decided. */
export type AuthOutcome = { principal: string } | { error: AgentError; reason: string };

/**
 * Bearer-token authentication for the local API: `Authorization: Bearer
 * <token>`. Failures are counted per client address; past the limit the
 * address gets 429 ERR_RATE_LIMITED until the window passes. Used by the
 * express chain ({@link bearerAuth}) and by the API's fast route alike.
 */
export class Authenticator {
  private readonly limit: number;
  private readonly store = new MemoryStore();
  private readonly match: (presented: string) => ApiToken | undefined;
  /**
   * Addresses with a failure counted in the store: only their requests go
   * through the rate limiter (which costs more per request than everything
   * else authentication does). An address leaves the set once the store no
   * longer counts it (its window passed), never before.
   */
  private readonly failing = new Set<string>();
  readonly limiter: RequestHandler;

  constructor(tokens: readonly ApiToken[], options: { failuresPerWindow?: number; windowMs?: number } = {}) {
    this.limit = options.failuresPerWindow ?? DEFAULT_AUTH_FAILURES_PER_WINDOW;
    this.match = tokenMatcher(tokens);
    const windowMs = options.windowMs ?? DEFAULT_AUTH_WINDOW_MS;
    // Only failed authentications are counted. Counting every request up front and un-counting successes
    // afterwards would refuse valid requests whenever more than `limit` were in flight at once (a burst of
    // uploads). An address over the limit is refused even with a valid token, so guesses made while blocked
    // are never evaluated.
    this.limiter = rateLimit({
      windowMs,
      limit: this.limit,
      store: this.store,
      keyGenerator: (req) => this.keyOf(req),
      skip: async (req) => ((await this.store.get(this.keyOf(req)))?.totalHits ?? 0) < this.limit,
      standardHeaders: 'draft-7',
      legacyHeaders: false,
      handler: (_req, _res, next) => next(new AgentError('ERR_RATE_LIMITED', 'too many failed authentication attempts; retry later')),
    });
    const sweep = setInterval(() => {
      for (const key of this.failing) {
        void this.store.get(key).then((hits) => {
          if (!hits || hits.totalHits === 0) this.failing.delete(key);
        });
      }
    }, windowMs);
    sweep.unref();
  }

  /** The rate-limit key of a request's address (IPv6 addresses by /56, as express-rate-limit does). */
  keyOf(req: AuthRequest): string {
    return ipKeyGenerator(req.socket.remoteAddress ?? '');
  }

  /** True when the address has failures counted: its requests must pass the rate limiter first. */
  suspect(req: AuthRequest): boolean {
    return this.failing.size > 0 && this.failing.has(this.keyOf(req));
  }

  /** Checks the bearer token; a failure is counted against the address before this resolves. */
  authenticate(req: AuthRequest): AuthOutcome | Promise<AuthOutcome> {
    const header = req.headers.authorization ?? '';
    const m = /^Bearer ([\x21-\x7e]{1,512})$/.exec(header);
    if (!m) return this.fail(req, header ? 'malformed' : 'missing', new AgentError('ERR_UNAUTHORIZED', 'missing or malformed bearer token'));
    const token = this.match(m[1] as string);
    if (!token) return this.fail(req, 'unknown token', new AgentError('ERR_UNAUTHORIZED', 'invalid bearer token'));
    return { principal: token.name };
  }

  private async fail(req: AuthRequest, reason: string, error: AgentError): Promise<AuthOutcome> {
    const key = this.keyOf(req);
    this.failing.add(key);
    await this.store.increment(key).catch(() => undefined);
    return { error, reason };
  }
}

/**
 * The express handlers of {@link Authenticator}: the rate limiter for
 * addresses with failures, then the token check. On success the token's name
 * is stored in `res.locals.principal`.
 */
export function bearerAuth(auth: Authenticator, options: { onFailure?: (req: Request, reason: string) => void } = {}): RequestHandler[] {
  const gate = (req: Request, res: Response, next: NextFunction): void => {
    if (!auth.suspect(req)) {
      next();
      return;
    }
    void auth.limiter(req, res, next);
  };
  const check = (req: Request, res: Response, next: NextFunction): void => {
    const settle = (outcome: AuthOutcome): void => {
      if ('error' in outcome) {
        options.onFailure?.(req, outcome.reason);
        next(outcome.error);
        return;
      }
      res.locals['principal'] = outcome.principal;
      next();
    };
    const outcome = auth.authenticate(req);
    if (outcome instanceof Promise) void outcome.then(settle);
    else settle(outcome);
  };
  return [gate, check];
}
