/**
 * What a release needs a consent's scope to cover, and what of it a consent
 * leaves out.
 *
 * A release's needs are a list of items (kept with the exchange and checked
 * again at send time):
 * - `Type#code\tcode...`: one kind of resource, its type and the codes
 *   (`system|code`) that categorise it (none after the `#` when it has none);
 * - `!system|code`: a sensitive security label on the data;
 * - `Type` alone: a resource type with nothing known of its categories
 *   (records requests, and exchanges queued before categories existed):
 *   checked by type only;
 * - `*`: everything (a records request for all the patient's data).
 *
 * A consent covers them when: every type is in its `scope` (or `scope` is
 * `*`); when it names `categories`, every kind of resource other than the
 * Patient it is about carries one of them; and every sensitive label is one
 * of its `labels` (`*` does not cover sensitive data).
 */
import type { BundleKinds } from '../fhir/labels.ts';

/** Scope that covers every kind of data (except sensitive data, which a consent names label by label). */
export const ALL_SCOPE = '*';
/** The resource type a category-scoped consent releases without a category: the patient the consent is about. */
export const UNCATEGORISED_TYPES: readonly string[] = ['Patient'];

/** The need of one kind of resource: its type and categorising codes. */
export function resourceNeed(type: string, codes: readonly string[] = []): string {
  return `${type}#${codes.join('\t')}`;
}

/** The need of a sensitive label (`system|code`). */
export function labelNeed(label: string): string {
  return `!${label}`;
}

/** The needs of a Bundle's contents (see fhir/labels.ts). */
export function bundleNeeds(kinds: BundleKinds): string[] {
  return [...kinds.resources.map((k) => resourceNeed(k.type, k.codes)), ...kinds.labels.map(labelNeed)];
}

/** What a consent's scope is made of. */
export interface ScopeTerms {
  scope: readonly string[];
  categories?: readonly string[] | undefined;
  labels?: readonly string[] | undefined;
}

/** What a consent leaves out of a release's needs (names of types, categories and labels: never data). */
export interface Outside {
  /** Resource types not in the consent's scope. */
  types: string[];
  /** Resource types with no category the consent names, each with (up to three of) its codes: `Observation (system|code, ...)`. */
  categories: string[];
  /** Sensitive labels the consent does not name. */
  labels: string[];
}

/** The items of `needs` that `terms` does not cover (empty lists when it covers them all). */
export function outsideScope(terms: ScopeTerms, needs: readonly string[]): Outside {
  const all = terms.scope.includes(ALL_SCOPE);
  const types = new Set<string>();
  const categories = new Set<string>();
  const labels = new Set<string>();
  for (const need of needs) {
    if (need.startsWith('!')) {
      const label = need.slice(1);
      if (!terms.labels?.includes(label)) labels.add(label);
      continue;
    }
    if (need === ALL_SCOPE) {
      if (!all) types.add(ALL_SCOPE);
      continue;
    }
    const hash = need.indexOf('#');
    const type = hash < 0 ? need : need.slice(0, hash);
    if (!all && !terms.scope.includes(type)) types.add(type);
    if (hash < 0 || !terms.categories || UNCATEGORISED_TYPES.includes(type)) continue;
    const codes = need
      .slice(hash + 1)
      .split('\t')
      .filter(Boolean);
    if (!codes.some((c) => terms.categories?.includes(c))) {
      categories.add(codes.length === 0 ? `${type} (no category)` : `${type} (${codes.slice(0, 3).join(', ')}${codes.length > 3 ? ', ...' : ''})`);
    }
  }
  return { types: [...types], categories: [...categories], labels: [...labels] };
}

/**
 * The needs `terms` covers, kept in the least space that still re-checks
 * alike under those terms (consent terms never change; a consent is only
 * revoked): each resource keeps only the codes `terms` names (none when it
 * names no categories), so kinds that differ only in other codes become one.
 * A release of a large Bundle of many distinct codes is stored with a
 * handful of items, not one per code.
 */
export function narrowNeeds(needs: readonly string[], terms: ScopeTerms): string[] {
  const out = new Set<string>();
  for (const need of needs) {
    const hash = need.indexOf('#');
    if (need.startsWith('!') || hash < 0) {
      out.add(need);
      continue;
    }
    const codes = need
      .slice(hash + 1)
      .split('\t')
      .filter((c) => c !== '' && terms.categories?.includes(c));
    out.add(resourceNeed(need.slice(0, hash), codes));
  }
  return [...out];
}

/** True when nothing is outside. */
export function covered(o: Outside): boolean {
  return o.types.length === 0 && o.categories.length === 0 && o.labels.length === 0;
}
