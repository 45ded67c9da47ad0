import { createHash } from 'node:crypto';
import { cardSignatureValid, decodeCard, type DecodedCard } from './card.ts';
import { ShcError } from './errors.ts';
import type { Issuer, VerifiedIssuerDirectory } from './issuers.ts';

/**
 * Verification of a card by anyone, with the issuer directory alone (a file
 * or the relay's well-known URLs) and, optionally, the ledger proof of its
 * issuance: the verdict, the reasons in plain words, and what the card states.
 */

/** What a verifier concludes. */
export const CARD_VERDICTS = ['valid', 'forged', 'revoked', 'unknown-issuer', 'issuer-suspended', 'issuer-revoked', 'expired', 'backdated', 'invalid'] as const;
/** A verdict. */
export type CardVerdict = (typeof CARD_VERDICTS)[number];

/** How much earlier than its ledger entry a card's `nbf` may be (signing comes just before the append). */
export const DEFAULT_BACKDATE_TOLERANCE_MS = 5 * 60_000;

/** An issuance the ledger proves: a `certificate.issued` entry that passed `verifyProof`. */
export interface ProvedIssuance {
  feed: string;
  ts: string;
  body: { card: string; kid: string; nbf: string; rid?: string | undefined };
}

/** Options of {@link verifyCard}. */
export interface VerifyCardOptions {
  now?: Date;
  /** Entries a verified ledger proof carries (`verifyProof(...).proved`); their `certificate.issued` ones are matched to the card. */
  proved?: ReadonlyArray<{ feed: string; ts: string; type: string; body: unknown }> | undefined;
  backdateToleranceMs?: number;
}

/** Outcome of {@link verifyCard}. */
export interface CardCheck {
  verdict: CardVerdict;
  /** Why, in plain words (the first one decides the verdict). */
  reasons: string[];
  /** SHA-256 of the JWS text, hex: what the issuer's ledger entry names. */
  cardHash?: string;
  issuer?: { id: string; name: string; iss: string; status: string };
  /** The card's `nbf` (when it says it was issued). */
  issuedAt?: string;
  /** The ledger's time of the issuance, when a proof showed it. */
  ledgerTime?: string;
  card?: DecodedCard;
  /** What the card states, line by line. */
  statements: string[];
}

/** SHA-256 of a card's JWS, lowercase hex. */
export function cardHash(jws: string): string {
  return createHash('sha256').update(jws.trim(), 'utf8').digest('hex');
}

/** Verifies a card against a verified issuer directory. Never throws on bad cards: the verdict says so. */
export async function verifyCard(jws: string, directory: Pick<VerifiedIssuerDirectory, 'byIss'>, options: VerifyCardOptions = {}): Promise<CardCheck> {
  let card: DecodedCard;
  try {
    card = decodeCard(jws);
  } catch (err) {
    // A changed character usually breaks the DEFLATE stream or the JSON before the signature is looked at: that is a forgery, not a format question.
    const reason = err instanceof ShcError ? err.message : 'not a SMART Health Card';
    return { verdict: looksSigned(jws) ? 'forged' : 'invalid', reasons: [reason], statements: [] };
  }
  const hash = cardHash(card.jws);
  const base = { cardHash: hash, card, issuedAt: new Date(card.payload.nbf * 1000).toISOString(), statements: describeCard(card) };
  const issuer = directory.byIss.get(card.payload.iss);
  if (!issuer) return { ...base, verdict: 'unknown-issuer', reasons: [`issuer ${card.payload.iss} is not in the federation's issuer directory`] };
  const who = { id: issuer.id, name: issuer.name, iss: issuer.iss, status: issuer.status };
  const out = (verdict: CardVerdict, reasons: string[], extra: Partial<CardCheck> = {}): CardCheck => ({ ...base, issuer: who, verdict, reasons, ...extra });
  const key = issuer.keys.find((k) => k.kid === card.header.kid);
  const revokedKey = issuer.revokedKeys.find((k) => k.kid === card.header.kid);
  if (!key && !revokedKey) return out('forged', [`${issuer.name} has no key ${card.header.kid}: the card was not signed by the issuer it names`]);
  const signer = key ?? revokedKey?.jwk;
  if (!signer || !(await cardSignatureValid(card.jws, signer))) return out('forged', ['the signature does not match the card: it was changed after signing']);
  const ledger = issuance(card, hash, issuer, options);
  const reasons: string[] = [];
  const tolerance = options.backdateToleranceMs ?? DEFAULT_BACKDATE_TOLERANCE_MS;
  if (ledger.entry) {
    const lt = Date.parse(ledger.entry.ts);
    if (card.payload.nbf * 1000 < lt - tolerance)
      return out('backdated', [`the card claims issuance at ${base.issuedAt} but the ledger recorded it at ${ledger.entry.ts}`], {
        ledgerTime: ledger.entry.ts,
      });
    reasons.push(`the ledger of ${issuer.id} recorded its issuance at ${ledger.entry.ts}`);
  } else if (ledger.problem) reasons.push(ledger.problem);
  if (revokedKey) {
    // A stolen key signs any nbf it likes: only the ledger can show the card predates the key's revocation.
    const revokedAt = Date.parse(revokedKey.revokedAt);
    if (!ledger.entry)
      return out('revoked', [
        `key ${revokedKey.kid} of ${issuer.name} was revoked at ${revokedKey.revokedAt}; without a ledger proof of an earlier issuance its cards are not trusted`,
      ]);
    if (Date.parse(ledger.entry.ts) >= revokedAt)
      return out(
        'revoked',
        [`signed with key ${revokedKey.kid} after its revocation at ${revokedKey.revokedAt}: the ledger recorded the issuance at ${ledger.entry.ts}`],
        {
          ledgerTime: ledger.entry.ts,
        },
      );
    reasons.push(`key ${revokedKey.kid} was revoked at ${revokedKey.revokedAt}, after this card's proved issuance`);
  }
  if (issuer.status !== 'active')
    return out(issuer.status === 'suspended' ? 'issuer-suspended' : 'issuer-revoked', [`${issuer.name} is ${issuer.status} in the federation`]);
  const rid = card.payload.vc.rid;
  const crl = issuer.crls.find((c) => c.kid === signer.kid);
  if (rid && crl) {
    for (const r of crl.rids) {
      const [id, until] = r.split('.');
      if (id === rid && (until === undefined || card.payload.nbf < Number(until))) return out('revoked', [`the issuer revoked this card (rid ${rid})`]);
    }
  }
  const now = (options.now ?? new Date()).getTime();
  if (card.payload.exp !== undefined && card.payload.exp * 1000 <= now)
    return out('expired', [`the card expired at ${new Date(card.payload.exp * 1000).toISOString()}`]);
  if (card.payload.nbf * 1000 > now + tolerance) return out('invalid', [`the card is not valid before ${base.issuedAt}`]);
  return out('valid', [`signed by ${issuer.name} (${issuer.iss}) with key ${signer.kid}`, ...reasons], ledger.entry ? { ledgerTime: ledger.entry.ts } : {});
}

function looksSigned(jws: string): boolean {
  return typeof jws === 'string' && /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(jws.trim());
}

function issuance(card: DecodedCard, hash: string, issuer: Issuer, options: VerifyCardOptions): { entry?: ProvedIssuance; problem?: string } {
  if (!options.proved) return {};
  for (const e of options.proved) {
    if (e.type !== 'certificate.issued' || e.feed !== issuer.id) continue;
    const body = e.body as ProvedIssuance['body'];
    if (body.card === hash) return { entry: { feed: e.feed, ts: e.ts, body } };
  }
  return { problem: `the ledger proof does not show ${issuer.id} issuing this card` };
}

type Json = Record<string, unknown>;
const codes = (cc: unknown): string => {
  const coding = (cc as { coding?: Array<{ system?: string; code?: string }> } | undefined)?.coding ?? [];
  return coding.map((c) => `${c.system ?? ''}|${c.code ?? ''}`).join(', ') || '(no code)';
};

/** What a card states, line by line (names, dates, codes: the card carries no display text). */
export function describeCard(card: DecodedCard): string[] {
  const lines = [`issued ${new Date(card.payload.nbf * 1000).toISOString()} by ${card.payload.iss}`, `types: ${card.payload.vc.type.join(', ')}`];
  for (const e of card.payload.vc.credentialSubject.fhirBundle.entry) {
    const r = ((e as Json)['resource'] ?? {}) as Json;
    switch (r['resourceType']) {
      case 'Patient': {
        const n = (r['name'] as Array<{ family?: string; given?: string[] }> | undefined)?.[0];
        lines.push(`patient: ${[...(n?.given ?? []), n?.family ?? ''].join(' ').trim()}${r['birthDate'] ? `, born ${String(r['birthDate'])}` : ''}`);
        break;
      }
      case 'Practitioner': {
        const n = (r['name'] as Array<{ family?: string; given?: string[] }> | undefined)?.[0];
        lines.push(`practitioner: ${[...(n?.given ?? []), n?.family ?? ''].join(' ').trim()}`);
        break;
      }
      case 'Observation': {
        const p = r['effectivePeriod'] as { start?: string; end?: string } | undefined;
        const code = codes(r['code']);
        if (code === 'urn:hie:certificate|unfit-for-work') lines.push(`unfit for work from ${p?.start ?? '?'} to ${p?.end ?? '?'}`);
        else lines.push(`observation ${code}${r['effectiveDateTime'] ? ` on ${String(r['effectiveDateTime'])}` : ''}`);
        break;
      }
      case 'Condition':
        lines.push(`diagnosis ${codes(r['code'])}${r['onsetDateTime'] ? ` since ${String(r['onsetDateTime'])}` : ''}`);
        break;
      case 'Immunization':
        lines.push(
          `vaccination ${codes(r['vaccineCode'])}${r['occurrenceDateTime'] ? ` on ${String(r['occurrenceDateTime'])}` : ''}${r['lotNumber'] ? `, lot ${String(r['lotNumber'])}` : ''}`,
        );
        break;
      default:
        lines.push(String(r['resourceType'] ?? 'resource'));
    }
  }
  return lines;
}
