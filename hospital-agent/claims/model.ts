/**
 * What the federation needs of a FHIR R4 Claim and how an insurer's answer is
 * written: the Claim's business identifier (what submission is idempotent
 * on), its total in minor units, and the ClaimResponse an insurer signs.
 */
import { createHash } from 'node:crypto';
import { jcs } from '../../certs/index.ts';
import { CLAIM_OUTCOMES, currencyDecimals } from '../../ledger/index.ts';
import { AgentError } from '../errors.ts';
import type { FhirIssue } from '../errors.ts';
import { validateR4 } from '../fhir/index.ts';

/** FHIR R4 `ClaimResponse.outcome`. */
export type ClaimOutcome = (typeof CLAIM_OUTCOMES)[number];
/** Outcomes that end a claim (an insurer answers a pended one with one of these). */
export const FINAL_OUTCOMES = ['complete', 'error', 'partial'] as const;
/** Identifier system of federation members in the resources agents write (`Reference.identifier`). */
export const MEMBER_SYSTEM = 'urn:hie:member';
/** Identifier system of the federation's claim ids (the id both agents file a claim under). */
export const CLAIM_ID_SYSTEM = 'urn:hie:claim';
/** Longest `ClaimResponse.disposition` an insurer may write. */
export const MAX_DISPOSITION_CHARS = 500;

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A Claim as the federation takes it: validated, with its identifier key and total. */
export interface CheckedClaim {
  claim: Json;
  coverage: Json;
  /** `system|value` of the Claim's first identifier: what submission is idempotent on. */
  identifier: string;
  /** `Claim.total` in minor units of `currency`. */
  amount: number;
  currency: string;
  /** SHA-256 of the Claim's JCS bytes, base64url (what the ledger names). */
  hash: string;
}

/** SHA-256 of `value`'s JCS bytes, as base64url. */
export function jcsHash(value: unknown): string {
  return createHash('sha256').update(jcs(value)).digest('base64url');
}

/** `value` (a FHIR decimal) of `currency` in minor units; undefined when it has more decimals than the currency or is out of range. */
export function toMinorUnits(value: number, currency: string): number | undefined {
  const d = currencyDecimals(currency);
  const minor = Math.round(value * 10 ** d);
  if (!Number.isSafeInteger(minor) || minor < 0 || Math.abs(minor - value * 10 ** d) > 1e-6) return undefined;
  return minor;
}

/** `minor` minor units of `currency` as a FHIR decimal. */
export function fromMinorUnits(minor: number, currency: string): number {
  return minor / 10 ** currencyDecimals(currency);
}

/** Coverages that validated clean, by the SHA-256 of their JSON text, oldest first; at most {@link MAX_VALID_COVERAGES}. */
const validCoverages = new Map<string, true>();
/** How many clean Coverages are remembered. */
export const MAX_VALID_COVERAGES = 1024;

/**
 * R4 problems of a Coverage. A member sends the same Coverage with every claim and eligibility request
 * of that policy, so one that validated clean is remembered by its exact JSON text and not walked again
 * (validation is a pure function of the resource; a different text, even in key order, is validated).
 */
export function coverageIssues(coverage: Json): ReturnType<typeof validateR4> {
  let text: string;
  try {
    text = JSON.stringify(coverage);
  } catch {
    return validateR4(coverage);
  }
  const key = createHash('sha256').update(text).digest('base64url');
  if (validCoverages.has(key)) {
    // Most recently used last, so the oldest is dropped first.
    validCoverages.delete(key);
    validCoverages.set(key, true);
    return [];
  }
  const issues = validateR4(coverage);
  if (issues.length === 0) {
    validCoverages.set(key, true);
    if (validCoverages.size > MAX_VALID_COVERAGES) validCoverages.delete(validCoverages.keys().next().value as string);
  }
  return issues;
}

function invalid(issues: FhirIssue[]): AgentError {
  return new AgentError('ERR_CLAIM_INVALID', issues[0]?.message ?? 'the claim is not one the federation takes', { issues });
}

/**
 * Checks a Claim and its Coverage: both valid FHIR R4 (422 ERR_FHIR_INVALID,
 * one issue per problem), the Claim with an identifier, a total in a currency,
 * at least one item, and an insurance entry (422 ERR_CLAIM_INVALID).
 */
export function checkClaim(claim: unknown, coverage: unknown): CheckedClaim {
  if (!isObject(claim) || claim['resourceType'] !== 'Claim') throw new AgentError('ERR_INVALID_FHIR', 'claim must be a FHIR Claim resource');
  if (!isObject(coverage) || coverage['resourceType'] !== 'Coverage') throw new AgentError('ERR_INVALID_FHIR', 'coverage must be a FHIR Coverage resource');
  const issues = [...validateR4(claim), ...coverageIssues(coverage)];
  if (issues.length > 0) throw new AgentError(issues[0]!.code, `${issues.length} problem(s) in the Claim or its Coverage`, { issues });
  const ids = claim['identifier'];
  const first = Array.isArray(ids) && isObject(ids[0]) ? ids[0] : undefined;
  const system = typeof first?.['system'] === 'string' ? first['system'] : '';
  const value = typeof first?.['value'] === 'string' ? first['value'] : '';
  if (!system || !value || system.length > 256 || value.length > 128)
    throw invalid([{ code: 'ERR_CLAIM_INVALID', expression: 'Claim.identifier[0]', message: 'the Claim needs an identifier with a system and a value' }]);
  const total = claim['total'];
  const currency = isObject(total) && typeof total['currency'] === 'string' ? total['currency'] : '';
  const amount = isObject(total) && typeof total['value'] === 'number' && currency ? toMinorUnits(total['value'], currency) : undefined;
  if (amount === undefined)
    throw invalid([{ code: 'ERR_CLAIM_INVALID', expression: 'Claim.total', message: 'the Claim needs a total (value and currency) in whole minor units' }]);
  if (!Array.isArray(claim['item']) || claim['item'].length === 0)
    throw invalid([{ code: 'ERR_CLAIM_INVALID', expression: 'Claim.item', message: 'the Claim needs at least one item' }]);
  if (!Array.isArray(claim['insurance']) || claim['insurance'].length === 0)
    throw invalid([{ code: 'ERR_CLAIM_INVALID', expression: 'Claim.insurance', message: 'the Claim needs an insurance entry naming its Coverage' }]);
  return { claim, coverage, identifier: `${system}|${value}`, amount, currency, hash: jcsHash(claim) };
}

/** What an insurer says about a claim. */
export interface Adjudication {
  outcome: ClaimOutcome;
  /** Benefit paid, minor units (0 unless complete or partial). */
  paid: number;
  currency: string;
  disposition?: string | undefined;
}

/**
 * The FHIR R4 ClaimResponse an insurer signs: it names the claim by the
 * federation's claim id and the Claim's own identifier, the parties by member
 * id, the outcome and, once paid, the benefit and the payment.
 */
export function claimResponse(input: { claimId: string; claim: Json; hospital: string; insurer: string; created: Date; adjudication: Adjudication }): Json {
  const { claim, adjudication: a } = input;
  const money = { value: fromMinorUnits(a.paid, a.currency), currency: a.currency };
  const ids = Array.isArray(claim['identifier']) ? (claim['identifier'] as Json[]) : [];
  const paid = (a.outcome === 'complete' || a.outcome === 'partial') && a.paid > 0;
  return {
    resourceType: 'ClaimResponse',
    id: input.claimId,
    identifier: [{ system: CLAIM_ID_SYSTEM, value: input.claimId }],
    status: 'active',
    type: claim['type'],
    use: claim['use'],
    patient: claim['patient'],
    created: input.created.toISOString(),
    insurer: { identifier: { system: MEMBER_SYSTEM, value: input.insurer } },
    requestor: { identifier: { system: MEMBER_SYSTEM, value: input.hospital } },
    request: { identifier: ids[0] ?? { system: CLAIM_ID_SYSTEM, value: input.claimId } },
    outcome: a.outcome,
    ...(a.disposition ? { disposition: a.disposition } : {}),
    ...(a.outcome === 'queued'
      ? {}
      : { total: [{ category: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/adjudication', code: 'benefit' }] }, amount: money }] }),
    ...(paid
      ? {
          payment: {
            type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/ex-paymenttype', code: a.outcome === 'complete' ? 'complete' : 'partial' }] },
            amount: money,
          },
        }
      : {}),
  };
}
