// One job: how the console writes amounts, times and sizes.

/** Digits after the decimal point of an ISO 4217 currency (EUR 2, JPY 0, KRW 0, BHD 3), as Intl knows them. */
export function currencyExponent(currency: string): number {
  try {
    return new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits ?? 2;
  } catch {
    return 2;
  }
}

/** An integer amount in minor units as currency units with the currency: 12345 EUR -> "123.45 EUR" (integer arithmetic, no floats). */
export function money(minor: number, currency: string): string {
  const exp = currencyExponent(currency);
  const sign = minor < 0 ? '-' : '';
  const abs = Math.abs(Math.trunc(minor));
  if (exp === 0) return `${sign}${abs} ${currency}`;
  const scale = 10 ** exp;
  const units = Math.floor(abs / scale);
  const cents = String(abs % scale).padStart(exp, '0');
  return `${sign}${units}.${cents} ${currency}`;
}

/** A ledger timestamp as the console shows it: `2026-11-03 14:05:09 UTC`. */
export function when(ts: string | undefined): string {
  if (!ts) return '-';
  return `${ts.slice(0, 10)} ${ts.slice(11, 19)} UTC`;
}

/** A byte count for people: 1.5 MB. */
export function size(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = bytes / 1000;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

/** A short form of a 64-hex hash for tables (the full hash is in the title). */
export function short(hash: string): string {
  return hash.length > 16 ? `${hash.slice(0, 12)}…` : hash;
}
