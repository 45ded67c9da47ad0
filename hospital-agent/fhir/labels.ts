/**
 * What kinds of data a FHIR Bundle holds, for the consent's scope: each
 * resource's type and the codes that categorise it (`category`, `type`,
 * `code`), and the sensitive security labels (`meta.security`) on the
 * Bundle, its resources and the resources they contain.
 *
 * A security label is sensitive when it is a confidentiality code `R`
 * (restricted) or `V` (very restricted) of HL7 v3 Confidentiality, or one of
 * the HL7 v3 ActCode information sensitivity codes of
 * {@link SENSITIVITY_CODES} (the stigmatising categories of the
 * `InformationSensitivityPolicy` value set that IHE PCF's advanced option
 * names, and their relatives).
 */

/** HL7 v3 Confidentiality code system (`meta.security` confidentiality labels). */
export const CONFIDENTIALITY_SYSTEM = 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality';
/** HL7 v3 ActCode code system (information sensitivity policy codes). */
export const ACT_CODE_SYSTEM = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';
/** Confidentiality codes that make data sensitive: restricted, very restricted. */
export const SENSITIVE_CONFIDENTIALITY = ['R', 'V'] as const;
/**
 * HL7 v3 ActCode sensitivity codes (value set v3-InformationSensitivityPolicy)
 * that make data sensitive: substance use (ETH, ETHUD, OPIOIDUD, SUD),
 * behavioural and mental health (BH, MH, PSY, PSYTHPN, COGN, DVD, EMOTDIS),
 * HIV and sexually transmitted disease (HIV, STD), sexuality and
 * reproductive health (SEX), sexual and domestic violence (SDV), military
 * sexual trauma (MST), genetic disease (GDIS), sickle cell (SCA), specially
 * protected or taboo information (SPI, TBOO) and patient-requested
 * sensitivity (PRS).
 */
export const SENSITIVITY_CODES = [
  'ETH',
  'ETHUD',
  'OPIOIDUD',
  'SUD',
  'BH',
  'MH',
  'PSY',
  'PSYTHPN',
  'COGN',
  'DVD',
  'EMOTDIS',
  'HIV',
  'STD',
  'SEX',
  'SDV',
  'MST',
  'GDIS',
  'SCA',
  'SPI',
  'TBOO',
  'PRS',
] as const;

/** A sensitive label as `system|code`, or undefined when the coding is not one. */
export function sensitiveLabel(system: unknown, code: unknown): string | undefined {
  if (typeof code !== 'string') return undefined;
  if (system === CONFIDENTIALITY_SYSTEM && (SENSITIVE_CONFIDENTIALITY as readonly string[]).includes(code)) return `${system}|${code}`;
  if (system === ACT_CODE_SYSTEM && (SENSITIVITY_CODES as readonly string[]).includes(code)) return `${system}|${code}`;
  return undefined;
}

/** One resource as the consent sees it: its type and the codes (`system|code`) that categorise it. */
export interface ResourceKind {
  type: string;
  codes: string[];
}

/** What a Bundle holds, for the consent check. */
export interface BundleKinds {
  /** Distinct kinds of resource (type and categorising codes). */
  resources: ResourceKind[];
  /** Distinct sensitive labels, `system|code`, sorted. */
  labels: string[];
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : v === undefined ? [] : [v]);
/** Codes in the code element of FHIR (no whitespace, as the ledger's CODING_PATTERN takes them) and systems as URIs. */
const CODE = /^[\x21-\x7e]{1,64}$/;
const SYSTEM = /^[A-Za-z][A-Za-z0-9+.-]{0,15}:[\x21-\x7b\x7d\x7e]{1,200}$/;
/** Elements whose CodeableConcepts categorise a resource (FHIR Consent.provision.code: "an appropriate code element"). */
const CODE_ELEMENTS = ['category', 'type', 'code'] as const;

function codings(value: unknown): string[] {
  const out: string[] = [];
  for (const concept of list(value)) {
    if (!isObject(concept)) continue;
    for (const c of list(concept['coding'])) {
      if (!isObject(c)) continue;
      const { system, code } = c;
      if (typeof system === 'string' && typeof code === 'string' && SYSTEM.test(system) && CODE.test(code)) out.push(`${system}|${code}`);
    }
  }
  return out;
}

function labelsOf(resource: Json, into: Set<string>): void {
  const meta = resource['meta'];
  if (!isObject(meta)) return;
  for (const s of list(meta['security'])) {
    if (!isObject(s)) continue;
    const label = sensitiveLabel(s['system'], s['code']);
    if (label) into.add(label);
  }
}

/** How deep Bundles nested in Bundle entries are read. */
export const MAX_NESTED_BUNDLES = 4;
/** The label a Bundle nested deeper than {@link MAX_NESTED_BUNDLES} stands for: restricted, since its labels are unread. */
export const UNREAD_LABEL = `${CONFIDENTIALITY_SYSTEM}|R`;

/**
 * The kinds of data in a Bundle (a parsed, structurally valid FHIR Bundle):
 * each entry's resource type with its categorising codes, and every
 * sensitive label on the Bundle, an entry's resource or a resource it
 * contains. A Bundle in an entry is read the same way (its own resources
 * count); one nested deeper than {@link MAX_NESTED_BUNDLES} counts as
 * restricted (confidentiality `R`), since what it holds is not read.
 */
export function bundleKinds(bundle: unknown): BundleKinds {
  const labels = new Set<string>();
  const kinds = new Map<string, ResourceKind>();
  if (isObject(bundle)) read(bundle, 0, labels, kinds);
  return { resources: [...kinds.values()], labels: [...labels].sort() };
}

function read(bundle: Json, depth: number, labels: Set<string>, kinds: Map<string, ResourceKind>): void {
  labelsOf(bundle, labels);
  for (const e of list(bundle['entry'])) {
    if (!isObject(e) || !isObject(e['resource'])) continue;
    const resource = e['resource'];
    const type = resource['resourceType'];
    if (typeof type !== 'string') continue;
    labelsOf(resource, labels);
    for (const c of list(resource['contained'])) if (isObject(c)) labelsOf(c, labels);
    const codes = [...new Set(CODE_ELEMENTS.flatMap((k) => codings(resource[k])))].sort();
    const key = `${type}#${codes.join('\t')}`;
    if (!kinds.has(key)) kinds.set(key, { type, codes });
    if (type === 'Bundle') {
      if (depth + 1 > MAX_NESTED_BUNDLES) labels.add(UNREAD_LABEL);
      else read(resource, depth + 1, labels, kinds);
    }
  }
}
