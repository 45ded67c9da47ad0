// One job: the console's server-side sessions (in memory, with idle and absolute expiry) and their CSRF tokens.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { ApiRole } from '../api/auth.ts';

/** A session ends after this long without a request. */
export const DEFAULT_SESSION_IDLE_MS = 15 * 60_000;
/** A session ends this long after sign-in whatever its use. */
export const DEFAULT_SESSION_MAX_MS = 8 * 3600_000;
/** Sessions held at once; signing in past it ends the oldest. */
export const MAX_SESSIONS = 1000;

/** One signed-in officer. */
export interface Session {
  id: string;
  principal: string;
  role: ApiRole;
  /** The synchronizer token every form of this session carries. */
  csrf: string;
  createdAt: number;
  seenAt: number;
}

const token = (): string => randomBytes(32).toString('base64url');

/** True when two tokens are equal, compared in constant time. */
export function sameToken(a: string | undefined, b: string | undefined): boolean {
  if (typeof a !== 'string' || typeof b !== 'string') return false;
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
}

/**
 * Sessions of the console, in the agent's memory: a restart signs everyone
 * out, which is the safe failure. The session id (256 random bits) is the
 * cookie; the CSRF token is a second secret that forms carry and the cookie
 * does not.
 */
export class SessionStore {
  private readonly sessions = new Map<string, Session>();
  private readonly idleMs: number;
  private readonly maxMs: number;
  private readonly now: () => number;

  constructor(options: { idleMs?: number; maxMs?: number; now?: () => number } = {}) {
    this.idleMs = options.idleMs ?? DEFAULT_SESSION_IDLE_MS;
    this.maxMs = options.maxMs ?? DEFAULT_SESSION_MAX_MS;
    this.now = options.now ?? Date.now;
  }

  /** Starts a session for a signed-in token. */
  create(principal: string, role: ApiRole): Session {
    this.sweep();
    if (this.sessions.size >= MAX_SESSIONS) {
      const oldest = this.sessions.keys().next().value;
      if (oldest !== undefined) this.sessions.delete(oldest);
    }
    const t = this.now();
    const s: Session = { id: token(), principal, role, csrf: token(), createdAt: t, seenAt: t };
    this.sessions.set(s.id, s);
    return s;
  }

  /** The live session of a cookie value (its idle clock restarted), or undefined. */
  get(id: string | undefined): Session | undefined {
    if (!id || !/^[A-Za-z0-9_-]{43}$/.test(id)) return undefined;
    const s = this.sessions.get(id);
    if (!s) return undefined;
    const t = this.now();
    if (t - s.seenAt > this.idleMs || t - s.createdAt > this.maxMs) {
      this.sessions.delete(id);
      return undefined;
    }
    s.seenAt = t;
    return s;
  }

  /** Ends a session. */
  end(id: string): void {
    this.sessions.delete(id);
  }

  /** Sessions held now. */
  get size(): number {
    return this.sessions.size;
  }

  /** A fresh random token (the sign-in form's double-submit token). */
  static token(): string {
    return token();
  }

  private sweep(): void {
    const t = this.now();
    for (const [id, s] of this.sessions) if (t - s.seenAt > this.idleMs || t - s.createdAt > this.maxMs) this.sessions.delete(id);
  }
}
