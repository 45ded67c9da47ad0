/**
 * The compliance console and the audit API's queries: an index of the ledger,
 * ITI-81-style AuditEvent and Consent search, server-rendered views behind
 * sessions with CSRF tokens and a strict CSP, and the console's access log.
 */
export { consoleRouter, CONSOLE_CSP, SESSION_COOKIE, SIGNIN_COOKIE, type ConsoleOptions } from './router.ts';
export {
  LedgerIndex,
  encodeCursor,
  decodeCursor,
  type ExchangeRow,
  type ConsentRow,
  type IndexedEntry,
  type EntryRef,
  type Cursor,
  type Page,
} from './ledger-index.ts';
export {
  parseAuditQuery,
  searchAuditEvents,
  searchConsents,
  DEFAULT_AUDIT_COUNT,
  MAX_AUDIT_COUNT,
  type PatientHasher,
  type AuditQuery,
} from './audit-query.ts';
export { AccessLog, type AccessRecord } from './access-log.ts';
export { SessionStore, DEFAULT_SESSION_IDLE_MS, DEFAULT_SESSION_MAX_MS, MAX_SESSIONS, type Session } from './sessions.ts';
export { html, escapeHtml, SafeHtml } from './html.ts';
export { money, currencyExponent } from './format.ts';
export type { ConsoleDeps, ConsoleClaims, ConsolePrescriptions } from './context.ts';
