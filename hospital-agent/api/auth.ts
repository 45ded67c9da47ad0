// One job: bearer-token authentication of the local API, with a limiter that bounds wrong guesses without locking out a valid client.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ipKeyGenerator } from 'express-rate-limit';
import { AgentError } from '../errors.ts';

/** Failed authentications one client address may make per window before its wrong tokens are penalised (429, slowed). */
export const DEFAULT_AUTH_FAILURES_PER_WINDOW = 20;
/** Window of the failed-authentication limit. */
export const DEFAULT_AUTH_WINDOW_MS = 60_000;
/** How long a penalised wrong token is held before its 429 (the tarpit). */
export const DEFAULT_AUTH_PENALTY_MS = 1_000;
/** Penalised requests one address may have held at once; a wrong token beyond them is answered 429 at once and its connection closed. */
export const DEFAULT_AUTH_MAX_PENALISED_PER_ADDRESS = 4;
/** Penalised requests held at once across all addresses (bounds the tarpit's memory whatever the number of addresses). */
export const DEFAULT_AUTH_MAX_PENALISED = 256;
/** Addresses whose failures are remembered at once; past it the oldest without a held request is forgotten. */
export const MAX_TRACKED_ADDRESSES = 10_000;
/** Shortest accepted API token. */
export const MIN_TOKEN_LENGTH = 32;

/**
 * What a token may do: `ehr` the EHR's API (/v1: send, consents, inbox,
 * ledger status); `compliance` the read-only console (/console) and audit API
 * (/fhir); `admin` both.
 */
export const API_ROLES = ['ehr', 'compliance', 'admin'] as const;
/** One of {@link API_ROLES}. */
export type ApiRole = (typeof API_ROLES)[number];

/** A named API token (the name is what the log records, never the token); no role is the role `admin` (tokens configured before roles existed). */
export interface ApiToken {
  name: string;
  token: string;
  role?: ApiRole;
}

/** The role a token acts with: its own, or `admin` for a token configured without one. */
export function roleOf(token: Pick<ApiToken, 'role'>): ApiRole {
  return token.role ?? 'admin';
}

/** True when `role` may use what `needed` guards (`admin` may use everything). */
export function roleAllows(role: ApiRole, needed: ApiRole): boolean {
  return role === 'admin' || role === needed;
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

/**
 * What {@link Authenticator.authenticate} decided. `close`: the answer should end
 * the connection (a wrong token refused at once because its address's tarpit was full).
 */
export type AuthOutcome = { principal: string; role: ApiRole } | { error: AgentError; reason: string; close?: boolean };

/** Options of {@link Authenticator}; the clock and the delay are injectable for tests. */
export interface AuthOptions {
  failuresPerWindow?: number;
  windowMs?: number;
  penaltyMs?: number;
  maxPenalisedPerAddress?: number;
  maxPenalised?: number;
  now?: () => number;
  delay?: (ms: number) => Promise<void>;
  /** Told of every failure, with what it got (for metrics). */
  onFailure?: (outcome: AuthFailureOutcome) => void;
}

/** What a failed authentication got: 401 at once, 429 after the tarpit, or 429 at once with the connection closed. */
export type AuthFailureOutcome = 'unauthorized' | 'tarpit' | 'shed';

/** Counters of what authentication did since start (for tests and metrics). */
export interface AuthStats {
  /** Requests whose token was compared with the known tokens. */
  evaluated: number;
  /** Of those, wrong, missing or malformed. */
  failed: number;
  /** Failures past the address's limit (answered 429). */
  penalised: number;
  /** Of those, refused at once (tarpit full) with the connection closed. */
  shed: number;
  /** Penalised requests held in the tarpit now. */
  held: number;
}

/** One address's failures in its current window, and its requests held in the tarpit. */
interface Failures {
  count: number;
  since: number;
  held: number;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Bearer-token authentication for the local API: `Authorization: Bearer
 * <token>`, used by the express chain ({@link bearerAuth}) and by the API's
 * fast route alike.
 *
 * The limiter never refuses a valid token. Any process on the EHR's host
 * shares the EHR's address, so a limiter that refuses an address outright
 * lets that process lock the EHR out with a few bad requests. Telling the
 * EHR's requests from a guesser's is itself comparing the token, so every
 * request's token is compared (in constant time, over SHA-256 digests) and a
 * match is served at once, whatever the address did before. What keeps
 * guessing hopeless is the token: at least {@link MIN_TOKEN_LENGTH}
 * characters, so an online guess cannot hit one by chance.
 *
 * What the limiter bounds is what wrong guesses get: failures are counted
 * per address (IPv6 by /56) in a window of `windowMs`; up to
 * `failuresPerWindow` are answered 401 at once. Past that, every wrong token
 * is answered 429 ERR_RATE_LIMITED after a tarpit delay of `penaltyMs`, so a
 * guesser that waits for its answers gets at most `maxPenalisedPerAddress`
 * of them per `penaltyMs` from one address. A wrong token that finds its
 * address's tarpit full (or the whole tarpit at `maxPenalised`) is answered
 * 429 at once and its connection is closed, so each such guess costs a new
 * connection and the agent holds no more than the caps. Failures keep
 * counting while penalised: a guesser stays penalised until it stops for a
 * whole window.
 */
export class Authenticator {
  private readonly limit: number;
  private readonly windowMs: number;
  private readonly penaltyMs: number;
  private readonly maxPerAddress: number;
  private readonly maxHeld: number;
  private readonly now: () => number;
  private readonly delay: (ms: number) => Promise<void>;
  private readonly onFailure: (outcome: AuthFailureOutcome) => void;
  private readonly match: (presented: string) => ApiToken | undefined;
  private readonly failures = new Map<string, Failures>();
  private readonly counts: AuthStats = { evaluated: 0, failed: 0, penalised: 0, shed: 0, held: 0 };

  constructor(tokens: readonly ApiToken[], options: AuthOptions = {}) {
    this.limit = options.failuresPerWindow ?? DEFAULT_AUTH_FAILURES_PER_WINDOW;
    this.windowMs = options.windowMs ?? DEFAULT_AUTH_WINDOW_MS;
    this.penaltyMs = options.penaltyMs ?? DEFAULT_AUTH_PENALTY_MS;
    this.maxPerAddress = options.maxPenalisedPerAddress ?? DEFAULT_AUTH_MAX_PENALISED_PER_ADDRESS;
    this.maxHeld = options.maxPenalised ?? DEFAULT_AUTH_MAX_PENALISED;
    for (const [name, v] of Object.entries({ failuresPerWindow: this.limit, windowMs: this.windowMs, maxPenalised: this.maxHeld })) {
      if (!Number.isInteger(v) || v < 1) throw new TypeError(`${name} must be a positive integer`);
    }
    for (const [name, v] of Object.entries({ penaltyMs: this.penaltyMs, maxPenalisedPerAddress: this.maxPerAddress })) {
      if (!Number.isInteger(v) || v < 0) throw new TypeError(`${name} must be a non-negative integer`);
    }
    this.now = options.now ?? Date.now;
    this.delay = options.delay ?? sleep;
    this.onFailure = options.onFailure ?? (() => undefined);
    this.match = tokenMatcher(tokens);
    const sweep = setInterval(() => this.forgetExpired(), this.windowMs);
    sweep.unref();
  }

  /** The rate-limit key of a request's address (IPv6 addresses by /56, as express-rate-limit does). */
  keyOf(req: AuthRequest): string {
    return ipKeyGenerator(req.socket.remoteAddress ?? '');
  }

  /** What authentication did so far. */
  stats(): AuthStats {
    return { ...this.counts };
  }

  /** Checks the bearer token; a failure is counted against the address, and a penalised one answered after the tarpit. */
  authenticate(req: AuthRequest): AuthOutcome | Promise<AuthOutcome> {
    const header = req.headers.authorization ?? '';
    const m = /^Bearer ([\x21-\x7e]{1,512})$/.exec(header);
    if (!m) return this.fail(req, header ? 'malformed' : 'missing', new AgentError('ERR_UNAUTHORIZED', 'missing or malformed bearer token'));
    this.counts.evaluated += 1;
    const token = this.match(m[1] as string);
    if (!token) return this.fail(req, 'unknown token', new AgentError('ERR_UNAUTHORIZED', 'invalid bearer token'));
    return { principal: token.name, role: roleOf(token) };
  }

  private fail(req: AuthRequest, reason: string, error: AgentError): AuthOutcome | Promise<AuthOutcome> {
    this.counts.failed += 1;
    const key = this.keyOf(req);
    const f = this.failuresOf(key);
    f.count += 1;
    if (f.count <= this.limit) {
      this.onFailure('unauthorized');
      return { error, reason };
    }
    // Penalised: the window restarts with every further failure, so only a whole quiet window ends the penalty.
    f.since = this.now();
    this.counts.penalised += 1;
    const limited = new AgentError('ERR_RATE_LIMITED', 'too many failed authentication attempts; retry later');
    if (f.held >= this.maxPerAddress || this.counts.held >= this.maxHeld) {
      this.counts.shed += 1;
      this.onFailure('shed');
      return { error: limited, reason: `${reason}, rate limited (tarpit full)`, close: true };
    }
    f.held += 1;
    this.counts.held += 1;
    this.onFailure('tarpit');
    const release = (): AuthOutcome => {
      f.held -= 1;
      this.counts.held -= 1;
      return { error: limited, reason: `${reason}, rate limited` };
    };
    return this.delay(this.penaltyMs).then(release, release);
  }

  /** The address's record, its window restarted when it passed; the oldest idle record makes room past {@link MAX_TRACKED_ADDRESSES}. */
  private failuresOf(key: string): Failures {
    const now = this.now();
    let f = this.failures.get(key);
    if (f && now - f.since >= this.windowMs) {
      f.count = 0;
      f.since = now;
    }
    if (!f) {
      if (this.failures.size >= MAX_TRACKED_ADDRESSES) this.forgetExpired(true);
      f = { count: 0, since: now, held: 0 };
      this.failures.set(key, f);
    }
    return f;
  }

  /** Drops records whose window passed and that hold nothing; with `room`, also the oldest idle one if that freed none. */
  private forgetExpired(room = false): void {
    const now = this.now();
    const before = this.failures.size;
    let oldestIdle: string | undefined;
    for (const [key, f] of this.failures) {
      if (f.held > 0) continue;
      oldestIdle ??= key;
      if (now - f.since >= this.windowMs) this.failures.delete(key);
    }
    if (room && this.failures.size === before && oldestIdle !== undefined) this.failures.delete(oldestIdle);
  }
}

/** The refusal of a valid token whose role does not allow a route (403 ERR_FORBIDDEN_ROLE). */
export function forbiddenRole(role: ApiRole, needed: ApiRole): AgentError {
  return new AgentError('ERR_FORBIDDEN_ROLE', `this token's role (${role}) does not allow this route (it needs ${needed})`, { detail: { role, needed } });
}

/**
 * The express handler of {@link Authenticator}: the token check (with the
 * tarpit for penalised wrong tokens), then the role check when `role` is
 * given (403 ERR_FORBIDDEN_ROLE). On success the token's name is stored in
 * `res.locals.principal` and its role in `res.locals.role`.
 */
export function bearerAuth(auth: Authenticator, options: { onFailure?: (req: Request, reason: string) => void; role?: ApiRole } = {}): RequestHandler[] {
  const check = (req: Request, res: Response, next: NextFunction): void => {
    const settle = (outcome: AuthOutcome): void => {
      if ('error' in outcome) {
        options.onFailure?.(req, outcome.reason);
        if (outcome.close) res.setHeader('Connection', 'close');
        next(outcome.error);
        return;
      }
      res.locals['principal'] = outcome.principal;
      res.locals['role'] = outcome.role;
      if (options.role && !roleAllows(outcome.role, options.role)) {
        next(forbiddenRole(outcome.role, options.role));
        return;
      }
      next();
    };
    const outcome = auth.authenticate(req);
    if (outcome instanceof Promise) void outcome.then(settle);
    else settle(outcome);
  };
  return [check];
}
