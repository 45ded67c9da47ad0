/**
 * Amounts as people read them. The ledger, the relay's tariff and usage
 * statements carry integer minor units (cents) and an ISO 4217 code; what a
 * person reads is the amount in currency units with its currency, with as
 * many decimals as the currency has (EUR 2, JPY 0, KWD 3).
 */

/** Decimals by currency code, as Intl answered (building an Intl.NumberFormat costs far more than the lookup). */
const decimalsByCode = new Map<string, number>();
/** Codes kept at most: well-formed codes are three letters, but the map must not grow without bound on what a peer sends. */
const MAX_CACHED_CODES = 512;

/** Decimals of `currency`'s minor unit (ISO 4217, as the runtime's Intl knows it; 2 for a code it does not know). */
export function currencyDecimals(currency: string): number {
  const known = decimalsByCode.get(currency);
  if (known !== undefined) return known;
  let d: number;
  try {
    d = new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits ?? 2;
  } catch {
    return 2;
  }
  if (decimalsByCode.size < MAX_CACHED_CODES) decimalsByCode.set(currency, d);
  return d;
}

/** `minor` minor units of `currency` as `12.34 EUR` (exact: integer arithmetic, never a float rounding). */
export function formatAmount(minor: number, currency: string): string {
  const d = currencyDecimals(currency);
  const sign = minor < 0 ? '-' : '';
  const abs = BigInt(Math.abs(Math.trunc(minor)));
  if (d === 0) return `${sign}${abs} ${currency}`;
  const scale = 10n ** BigInt(d);
  return `${sign}${abs / scale}.${(abs % scale).toString().padStart(d, '0')} ${currency}`;
}
