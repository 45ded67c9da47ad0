import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The synthetic patient bundle of scripts/fixtures, as shipped (its Patient is urn:oid:2.25.0.1|SYN-000001). */
export const FIXTURE_BUNDLE = readFileSync(fileURLToPath(new URL('../../scripts/fixtures/patient-bundle.json', import.meta.url)));
/** The identifier system of the fixture's Patient. */
export const FIXTURE_SYSTEM = 'urn:oid:2.25.0.1';

/** The fixture bundle about the patient `value` (its Patient's identifier value replaced; the fixture's own bytes for its own patient): what the EHR sends for that patient. */
export function bundleFor(value: string, bundle: Buffer = FIXTURE_BUNDLE): Buffer {
  if (bundle === FIXTURE_BUNDLE && value === 'SYN-000001') return bundle;
  const json = JSON.parse(bundle.toString('utf8')) as { entry: Array<{ resource: { resourceType: string; identifier?: Array<{ value: string }> } }> };
  for (const e of json.entry) if (e.resource.resourceType === 'Patient') for (const id of e.resource.identifier ?? []) id.value = value;
  return Buffer.from(JSON.stringify(json, null, 2));
}
