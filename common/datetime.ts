/**
 * Strict FHIR `dateTime` / RFC 3339 parsing for dates the API and the CLIs take
 * (consent validity, audit and ledger report periods): no `Date.parse` leniency.
 *
 * Accepted: a FHIR R4 `dateTime`, i.e. `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, or
 * `YYYY-MM-DDThh:mm:ss[.fraction]` with a timezone (`Z` or `±hh:mm`), which
 * is also every RFC 3339 date-time with an upper-case `T` and `Z`. Years are
 * 0001-9999; the month, the day in that month, hours 00-23, minutes and
 * seconds 00-59 are checked (a leap second `:60` is refused: an instant
 * cannot hold it).
 *
 * A partial date names a period, and a validity bound takes the end of that
 * period that keeps it inside (FHIR `Period` semantics, where `end`
 * "includes any matching date/time"): as a start (`validFrom`) the first
 * millisecond of the year, month or day, as an end (`validUntil`) the last
 * one. Partial dates carry no timezone and are read in UTC.
 */

const DATE_TIME = /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2}))?)?)?$/;

/** What a date field must be, for error messages. */
export const FHIR_DATE_TIME_RULE =
  'must be an RFC 3339 / FHIR dateTime (YYYY, YYYY-MM, YYYY-MM-DD, or YYYY-MM-DDThh:mm:ss[.sss] with Z or ±hh:mm) in the years 0001-9999';

/** Which end of a partial date's period an instant is taken from. */
export type DateBound = 'start' | 'end';

function daysIn(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/**
 * Parses a FHIR `dateTime` (see the module comment) into an instant, or
 * returns undefined when `text` is not one. `bound` says which instant a
 * partial date (a year, month or day) stands for.
 */
export function parseFhirDateTime(text: string, bound: DateBound = 'start'): Date | undefined {
  const m = DATE_TIME.exec(text);
  if (!m) return undefined;
  const year = Number(m[1]);
  if (year < 1) return undefined;
  const month = m[2] === undefined ? undefined : Number(m[2]);
  if (month !== undefined && (month < 1 || month > 12)) return undefined;
  const day = m[3] === undefined ? undefined : Number(m[3]);
  if (day !== undefined && (day < 1 || day > daysIn(year, month as number))) return undefined;
  const utc = (y: number, mo: number, d: number, h = 0, mi = 0, s = 0, ms = 0): Date => {
    const t = new Date(0);
    // setUTCFullYear, not Date.UTC: Date.UTC maps years 0-99 to 1900-1999.
    t.setUTCFullYear(y, mo, d);
    t.setUTCHours(h, mi, s, ms);
    return t;
  };
  if (m[4] === undefined) {
    if (bound === 'start') return utc(year, (month ?? 1) - 1, day ?? 1);
    // The first millisecond of the next period, less one.
    const next = day !== undefined ? utc(year, (month as number) - 1, day + 1) : month !== undefined ? utc(year, month, 1) : utc(year + 1, 0, 1);
    return new Date(next.getTime() - 1);
  }
  const [hour, minute, second] = [Number(m[4]), Number(m[5]), Number(m[6])];
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  const ms = m[7] === undefined ? 0 : Number(m[7].slice(0, 3).padEnd(3, '0'));
  const zone = m[8] as string;
  let offset = 0;
  if (zone !== 'Z') {
    const oh = Number(zone.slice(1, 3));
    const om = Number(zone.slice(4, 6));
    if (oh > 23 || om > 59) return undefined;
    offset = (zone.startsWith('-') ? -1 : 1) * (oh * 60 + om);
  }
  return new Date(utc(year, (month as number) - 1, day as number, hour, minute, second, ms).getTime() - offset * 60_000);
}

/** True when `text` is a FHIR `dateTime` (see {@link parseFhirDateTime}). */
export function isFhirDateTime(text: string): boolean {
  return parseFhirDateTime(text) !== undefined;
}
