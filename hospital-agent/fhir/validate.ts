/**
 * FHIR R4 validation of a resource (a Bundle and everything in it) against
 * the official StructureDefinitions ({@link loadR4Definitions}), with
 * `@medplum/core`'s validator doing the structural work (required elements,
 * cardinality, unknown elements, primitive formats, JSON types, choice-type
 * names, and the FHIRPath invariants such as the Bundle's bdl-1..bdl-12),
 * and this module adding what that validator leaves out (see
 * docs/fhir-validation.md): `required` code bindings, real calendar dates,
 * `Resource.id` syntax, empty strings, more than one type of a choice
 * element, the fullUrl rules of R4 Bundles, and references inside a Bundle
 * that must resolve to an entry of the right type.
 *
 * Every problem is one {@link FhirIssue} located by a FHIRPath expression;
 * messages name elements and rules, never values (no PHI).
 */
import { getDataType, isPrimitiveType, isResourceType, OperationOutcomeError, validateResource, type InternalTypeSchema } from '@medplum/core';
import type { FhirIssue } from '../errors.ts';
import { parseFhirDateTime } from './datetime.ts';
import { loadR4Definitions, valueSetCodes } from './definitions.ts';

// @medplum/fhirtypes is not a dependency of ours: its types are named through the functions that take them.
type Resource = Parameters<typeof validateResource>[0];
type OperationOutcomeIssue = NonNullable<OperationOutcomeError['outcome']['issue']>[number];

/** Codes of the problems this validator reports (422 in the agent's error registry). */
export type ValidationIssueCode = 'ERR_FHIR_INVALID' | 'ERR_FHIR_REFERENCE_UNRESOLVED';

/** One problem found by {@link validateR4}. */
export interface ValidationIssue extends FhirIssue {
  code: ValidationIssueCode;
  /** FHIR `OperationOutcome.issue.code` (IssueType): structure, required, value, invariant, not-found, ... */
  type: string;
}

/** Most issues reported for one resource: past this the rest are summed up in one issue. */
export const MAX_VALIDATION_ISSUES = 100;

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** FHIR R4 `id`: 1-64 of A-Z a-z 0-9 - . */
const ID = /^[A-Za-z0-9.-]{1,64}$/;
/** FHIR R4 `uuid` as a URI (lower-case hex, RFC 4122 layout). */
const URN_UUID = /^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** FHIR R4 `oid` as a URI. */
const URN_OID = /^urn:oid:[0-2](\.(0|[1-9][0-9]*))+$/;
/** A RESTful resource URL or relative reference: `[base/]Type/id[/_history/version]` (FHIR R4 3.2.0.2). */
const RESTFUL = /^(?:(.*)\/)?([A-Z][A-Za-z]{1,63})\/([A-Za-z0-9.-]{1,64})(?:\/_history\/[A-Za-z0-9.-]{1,64})?$/;
const ABSOLUTE = /^[a-z][a-z0-9+.-]*:/i;
const DATE_TYPES = new Set(['date', 'dateTime', 'instant']);

const cap = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);
/** A medplum message without quoted text, which may carry a value (property names are kept: they are the schema's or the sender's keys). */
const scrub = (text: string): string => (/^Invalid additional property/.test(text) ? text : text.replace(/"[^"]*"/g, '"…"')).slice(0, 300);

type Element = NonNullable<InternalTypeSchema['elements'][string]>;
/** How a key present in an object of some type is read: its element, the type of its values, and for a choice (`valueQuantity`) the element's name (`value[x]`). */
interface Slot {
  element: Element;
  type: string;
  choice?: string;
}
/** Per type, its keys as they appear in JSON (choice elements by their concrete names), filled as they are met. */
const slots = new WeakMap<InternalTypeSchema, Map<string, Slot | null>>();

function slotOf(schema: InternalTypeSchema, key: string): Slot | undefined {
  let bySchema = slots.get(schema);
  if (!bySchema) slots.set(schema, (bySchema = new Map()));
  let slot = bySchema.get(key);
  if (slot === undefined) {
    slot = null;
    const element = schema.elements[key];
    const first = element?.type[0];
    if (element && first) slot = { element, type: first.code };
    else if (!key.startsWith('_'))
      for (const [name, choice] of Object.entries(schema.elements)) {
        if (!name.endsWith('[x]') || !key.startsWith(name.slice(0, -3))) continue;
        const t = choice.type.find((c) => name.slice(0, -3) + cap(c.code) === key);
        if (t) {
          slot = { element: choice, type: t.code, choice: name };
          break;
        }
      }
    // Keys are the sender's: only keys the type defines are kept, so the cache is bounded by the definitions.
    if (slot || Object.hasOwn(schema.elements, key)) bySchema.set(key, slot);
  }
  return slot ?? undefined;
}

function isEmptyObject(o: Json): boolean {
  for (const k in o) if (Object.hasOwn(o, k)) return false;
  return true;
}

const primitives = new Map<string, boolean>();
function primitive(type: string): boolean {
  let p = primitives.get(type);
  if (p === undefined) primitives.set(type, (p = isPrimitiveType(type)));
  return p;
}

/** The definition of a type or resource type, or undefined when R4 has none. */
function schemaOf(type: string): InternalTypeSchema | undefined {
  try {
    return getDataType(type);
  } catch {
    return undefined;
  }
}

const knownResource = (t: string): boolean => Boolean(isResourceType(t));

/** The resource types of the R4 definitions (known once they are loaded). */
function isKnownResourceType(type: unknown, known: (t: string) => boolean): boolean {
  return typeof type === 'string' && /^[A-Z][A-Za-z]{1,63}$/.test(type) && known(type);
}

/**
 * Validates `resource` (parsed JSON) as FHIR R4 and returns every problem
 * found (an empty list when there is none). Loads the definitions first if
 * the agent has not ({@link loadR4Definitions}).
 */
export function validateR4(resource: Json): ValidationIssue[] {
  loadR4Definitions();
  const root = typeof resource['resourceType'] === 'string' ? resource['resourceType'] : 'Resource';
  const issues: ValidationIssue[] = [];
  const add = (i: Omit<ValidationIssue, 'code'> & { code?: ValidationIssueCode }): void => {
    issues.push({ code: i.code ?? 'ERR_FHIR_INVALID', type: i.type, expression: i.expression, message: i.message });
  };

  // medplum's validator stops at the first resource of an unknown type: they are reported here and the rest not checked.
  const unknown = unknownTypes(resource, root);
  if (unknown.length > 0) return unknown;

  const choices = new Map<string, string>();
  const concrete = (path: string): string => {
    let out = path;
    for (let i = out.indexOf('[x]'); i >= 0; i = out.indexOf('[x]')) {
      const c = choices.get(out.slice(0, i + 3));
      if (c === undefined) break;
      out = c + out.slice(i + 3);
    }
    return out;
  };

  const own: Array<{ at: string; issue: ValidationIssue }> = [];
  const ownIssue = (at: string, i: Omit<ValidationIssue, 'code'> & { code?: ValidationIssueCode }): void => {
    own.push({ at, issue: { code: i.code ?? 'ERR_FHIR_INVALID', type: i.type, expression: i.expression, message: i.message } });
  };
  const refs = root === 'Bundle' ? bundleIndex(resource) : undefined;

  type Typed = { type: string; value: unknown; path: string };
  /** The checks medplum's validator does not make, on one value of `key` (an element of `schema`). */
  const check = (v: Typed, key: string, element: Element, schema: InternalTypeSchema): void => {
    const at = concrete(v.path);
    if (v.type === 'code' && element.binding?.strength === 'required' && element.binding.valueSet && typeof v.value === 'string') {
      const codes = valueSetCodes(element.binding.valueSet);
      if (codes && !codes.has(v.value))
        ownIssue(v.path, {
          type: 'code-invalid',
          expression: at,
          message: `the code is not in the required value set ${element.binding.valueSet.split('|')[0]}`,
        });
    }
    if (DATE_TYPES.has(v.type) && typeof v.value === 'string' && parseFhirDateTime(v.value) === undefined)
      ownIssue(v.path, { type: 'value', expression: at, message: `not a valid ${v.type} (no such date or time, or no timezone with a time)` });
    if (key === 'id' && schema.kind === 'resource' && (typeof v.value !== 'string' || !ID.test(v.value)))
      ownIssue(v.path, { type: 'value', expression: at, message: 'a resource id is 1-64 characters of A-Z, a-z, 0-9, - and .' });
    if (refs && v.type === 'Reference' && isObject(v.value) && typeof v.value['reference'] === 'string') {
      const targets = element.type.flatMap((t) => t.targetProfile ?? []).map((p) => p.slice(p.lastIndexOf('/') + 1));
      const problem = referenceProblem(v.value['reference'], at, targets, refs);
      if (problem) ownIssue(v.path + '.reference', problem);
    }
  };
  const shadowed: string[] = [];
  /** Our own checks on every value present in `value` (of type `schema`) and below, each at its FHIRPath (concrete choice names, array indexes). */
  const walk = (value: Json, schema: InternalTypeSchema, path: string): void => {
    let choiceKeys: Map<string, string[]> | undefined;
    for (const key of Object.keys(value)) {
      const slot = slotOf(schema, key);
      if (!slot) continue;
      if (slot.choice !== undefined) {
        choiceKeys ??= new Map();
        const keys = choiceKeys.get(slot.choice);
        if (keys) keys.push(key);
        else choiceKeys.set(slot.choice, [key]);
      }
      const raw = value[key];
      const many = Array.isArray(raw);
      const items: unknown[] = many ? raw : [raw];
      for (let i = 0; i < items.length; i++) {
        const item = items[i];
        // As the validator reads values: an empty string or object is absent (emptyStrings reports the first, medplum the second).
        if (item === undefined || item === null || item === '' || (isObject(item) && isEmptyObject(item))) continue;
        const at = many ? `${path}.${key}[${i}]` : `${path}.${key}`;
        // A resource is read as its own type when R4 defines it (the sender's string is never a lookup key otherwise).
        const type =
          slot.type === 'Resource' && isObject(item) && isKnownResourceType(item['resourceType'], knownResource) ? (item['resourceType'] as string) : slot.type;
        check({ type, value: item, path: at }, key, slot.element, schema);
        if (isObject(item) && !primitive(type)) {
          const inner = schemaOf(type);
          if (inner) walk(item, inner, at);
        }
      }
    }
    if (choiceKeys)
      for (const [name, keys] of choiceKeys) {
        const base = name.slice(0, -3);
        // In the order of the element's types, as the validator reads them: the first is the one it checks.
        const present = keys.length === 1 ? keys : (schema.elements[name]?.type ?? []).map((t) => base + cap(t.code)).filter((k) => keys.includes(k));
        choices.set(`${path}.${name}`, `${path}.${present[0]}`);
        if (present.length < 2) continue;
        // medplum's validator walks the second of two types under the first's schema: what is found there is not reported.
        for (const k of present.slice(1)) shadowed.push(`${path}.${k}.`);
        ownIssue(`${path}.${base}`, { type: 'structure', expression: `${path}.${base}`, message: `only one of ${present.join(', ')} may be present` });
      }
  };
  // Hostile shapes must end in a 422, not in an exception out of the library: the walk and the validator are fenced.
  const unwalkable = (): ValidationIssue[] => [
    { code: 'ERR_FHIR_INVALID', type: 'structure', expression: root, message: 'the resource cannot be read against the R4 definitions' },
  ];
  try {
    const schema = schemaOf(root);
    if (schema) walk(resource, schema, root);
  } catch {
    own.length = 0;
  }

  let structural: OperationOutcomeIssue[] = [];
  try {
    validateResource(resource as unknown as Resource);
  } catch (err) {
    if (!(err instanceof OperationOutcomeError)) return unwalkable();
    structural = err.outcome.issue ?? [];
  }
  const seen = new Set<string>();
  for (const i of structural) {
    if (i.severity !== 'error' && i.severity !== 'fatal') continue;
    const raw = i.expression?.[0] ?? root;
    seen.add(raw).add(concrete(raw));
    add({ type: i.code ?? 'invalid', expression: concrete(raw), message: scrub(i.details?.text ?? 'invalid') });
  }
  // What medplum reported about an element already (e.g. a malformed date) is not reported twice.
  for (const o of own) if (!seen.has(o.at) && !shadowed.some((p) => o.issue.expression.startsWith(p))) issues.push(o.issue);
  emptyStrings(resource, root, (expression) => add({ type: 'value', expression, message: 'a primitive value must not be an empty string (omit the element)' }));
  if (refs) issues.push(...fullUrlIssues(resource));

  if (issues.length > MAX_VALIDATION_ISSUES) {
    const more = issues.length - MAX_VALIDATION_ISSUES + 1;
    issues.length = MAX_VALIDATION_ISSUES - 1;
    add({ type: 'too-costly', expression: root, message: `${more} more problems not listed` });
  }
  return issues;
}

/** Resources (a Bundle's entries, contained resources) whose type R4 does not define. */
function unknownTypes(resource: Json, root: string): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  const known = (t: string): boolean => Boolean(isResourceType(t));
  const check = (r: unknown, at: string): void => {
    if (!isObject(r)) return;
    if (!isKnownResourceType(r['resourceType'], known))
      issues.push({ code: 'ERR_FHIR_INVALID', type: 'structure', expression: `${at}.resourceType`, message: 'not a resource type of FHIR R4' });
    if (Array.isArray(r['contained'])) r['contained'].forEach((c, j) => check(c, `${at}.contained[${j}]`));
    if (r['resourceType'] === 'Bundle' && Array.isArray(r['entry']))
      r['entry'].forEach((e, i) => isObject(e) && check(e['resource'], `${at}.entry[${i}].resource`));
  };
  check(resource, root);
  return issues;
}

/** Where references inside a Bundle may point. */
interface BundleIndex {
  fullUrls: Map<string, Json>;
  /** `Type/id` of every entry's resource. */
  byTypeId: Map<string, Json>;
  entries: unknown[];
}

function bundleIndex(bundle: Json): BundleIndex {
  const entries = Array.isArray(bundle['entry']) ? bundle['entry'] : [];
  const fullUrls = new Map<string, Json>();
  const byTypeId = new Map<string, Json>();
  for (const e of entries) {
    if (!isObject(e) || !isObject(e['resource'])) continue;
    const r = e['resource'];
    if (typeof e['fullUrl'] === 'string') fullUrls.set(e['fullUrl'], r);
    if (typeof r['resourceType'] === 'string' && typeof r['id'] === 'string') byTypeId.set(`${r['resourceType']}/${r['id']}`, r);
  }
  return { fullUrls, byTypeId, entries };
}

/** What is wrong with one `Reference.reference` inside a Bundle, if anything. */
function referenceProblem(
  reference: string,
  at: string,
  targets: string[],
  x: BundleIndex,
): (Omit<ValidationIssue, 'code'> & { code?: ValidationIssueCode }) | undefined {
  const expression = `${at}.reference`;
  const wrongType = (type: unknown): (Omit<ValidationIssue, 'code'> & { code?: ValidationIssueCode }) | undefined =>
    targets.length > 0 && !targets.includes('Resource') && typeof type === 'string' && !targets.includes(type)
      ? { type: 'structure', expression, message: `refers to a ${type}; this element refers to ${targets.join(', ')}` }
      : undefined;
  const unresolved = (why: string): Omit<ValidationIssue, 'code'> & { code?: ValidationIssueCode } => ({
    code: 'ERR_FHIR_REFERENCE_UNRESOLVED',
    type: 'not-found',
    expression,
    message: why,
  });
  if (reference.startsWith('#')) {
    if (reference === '#') return undefined;
    const m = /^Bundle\.entry\[(\d+)\]\.resource/.exec(at);
    const entry = m ? x.entries[Number(m[1])] : undefined;
    const container = isObject(entry) && isObject(entry['resource']) ? entry['resource'] : undefined;
    const contained = Array.isArray(container?.['contained']) ? (container['contained'] as unknown[]) : [];
    const target = contained.find((c) => isObject(c) && c['id'] === reference.slice(1));
    if (!target) return unresolved('refers to a contained resource the resource does not contain');
    return wrongType((target as Json)['resourceType']);
  }
  const byUrl = x.fullUrls.get(reference);
  if (byUrl) return wrongType(byUrl['resourceType']);
  if (/^urn:(uuid|oid):/i.test(reference)) return unresolved('refers to an entry (fullUrl) that is not in the Bundle');
  const m = RESTFUL.exec(reference);
  if (!m) return undefined;
  const [, base, type, id] = m;
  if (base !== undefined && !ABSOLUTE.test(base)) return undefined;
  if (base === undefined) {
    const entryBase = restfulBase(at, x);
    // A relative Type/id in an entry with a RESTful fullUrl is a resource of that server (R4 bundle.html#references):
    // in the Bundle when an entry has that URL, else elsewhere. Anywhere else it can only mean an entry of this Bundle.
    const inBundle = x.byTypeId.get(`${type}/${id}`) ?? (entryBase !== undefined ? x.fullUrls.get(`${entryBase}/${type}/${id}`) : undefined);
    if (inBundle) return wrongType(inBundle['resourceType']);
    if (entryBase === undefined) return unresolved('refers to a resource (Type/id) that is not in the Bundle');
  }
  // An absolute URL not among the fullUrls is a resource elsewhere: only its type is checked.
  return wrongType(type);
}

/**
 * The server base a relative reference at `at` resolves against: the
 * RESTful fullUrl's base of the entry it is in, or, outside any entry
 * (Bundle.signature), the base of the first entry with a RESTful fullUrl.
 */
function restfulBase(at: string, x: BundleIndex): string | undefined {
  const m = /^Bundle\.entry\[(\d+)\]/.exec(at);
  if (m) {
    const entry = x.entries[Number(m[1])];
    const url = isObject(entry) && typeof entry['fullUrl'] === 'string' ? entry['fullUrl'] : undefined;
    const r = url !== undefined && ABSOLUTE.test(url) && !/^urn:/i.test(url) ? RESTFUL.exec(url) : null;
    return r?.[1];
  }
  for (const url of x.fullUrls.keys()) {
    const base = ABSOLUTE.test(url) && !/^urn:/i.test(url) ? RESTFUL.exec(url)?.[1] : undefined;
    if (base !== undefined) return base;
  }
  return undefined;
}

/** R4's rules on `Bundle.entry.fullUrl` that no invariant states: a urn is a well-formed uuid/oid, a RESTful URL ends with the resource's type and id. */
function fullUrlIssues(bundle: Json): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  const entries = Array.isArray(bundle['entry']) ? bundle['entry'] : [];
  entries.forEach((e, i) => {
    if (!isObject(e) || typeof e['fullUrl'] !== 'string') return;
    const url = e['fullUrl'];
    const expression = `Bundle.entry[${i}].fullUrl`;
    const r = isObject(e['resource']) ? e['resource'] : undefined;
    if (/^urn:uuid:/i.test(url) && !URN_UUID.test(url))
      issues.push({ code: 'ERR_FHIR_INVALID', type: 'value', expression, message: 'a urn:uuid fullUrl must hold a UUID in lower-case hex (FHIR uuid)' });
    else if (/^urn:oid:/i.test(url) && !URN_OID.test(url))
      issues.push({ code: 'ERR_FHIR_INVALID', type: 'value', expression, message: 'a urn:oid fullUrl must hold an OID (FHIR oid)' });
    else if (r && ABSOLUTE.test(url) && !/^urn:/i.test(url)) {
      const m = RESTFUL.exec(url);
      if (m && m[2] === r['resourceType'] && typeof r['id'] === 'string' && m[3] !== r['id'])
        issues.push({
          code: 'ERR_FHIR_INVALID',
          type: 'invariant',
          expression,
          message: 'a RESTful fullUrl must end with the resource id (Bundle.entry.fullUrl, FHIR R4)',
        });
      else if (m && m[2] === r['resourceType'] && r['id'] === undefined)
        issues.push({
          code: 'ERR_FHIR_INVALID',
          type: 'invariant',
          expression,
          message: 'a RESTful fullUrl names an id the resource does not carry (Resource.id)',
        });
    }
  });
  return issues;
}

/** Calls `found` with the FHIRPath of every empty string in `value` (JSON forbids none, FHIR forbids them all). */
function emptyStrings(value: unknown, path: string, found: (expression: string) => void): void {
  if (value === '') found(path);
  else if (Array.isArray(value)) value.forEach((v, i) => emptyStrings(v, `${path}[${i}]`, found));
  else if (isObject(value))
    for (const [k, v] of Object.entries(value)) {
      if (k === 'resourceType') continue;
      emptyStrings(v, `${path}.${k}`, found);
    }
}
