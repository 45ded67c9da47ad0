/** `hie-agent patient enrol|ask|requests|request|access-log`: patients as a party from the command line (docs/patients.md). */
import { writeFileSync } from 'node:fs';
import { call, CLIENT_OPTIONS, need, one, patientOf, print, target, UsageError, type CliIo, type Options } from './client.ts';

interface PatientCommand {
  usage: string;
  summary: string;
  help?: string;
  options: Options;
  run: (values: Record<string, unknown>, positionals: string[], io: CliIo, args: string[]) => Promise<number>;
}

interface RequestView {
  id: string;
  grantees: string[];
  purposes: string[];
  validUntil: string;
  createdAt: string;
  status: string;
}

interface Release {
  exchange: string;
  to: string;
  at: string;
  consent: string;
  purpose: string;
  receipt: { disposition: unknown; at: string } | null;
  proof: { feed: string; seq: number };
}

const json = (values: Record<string, unknown>): boolean => values['json'] === true;
const line = (r: RequestView): string => `${r.id}  ${r.status}  to ${r.grantees.join(',')}  for ${r.purposes.join(',')}  until ${r.validUntil}\n`;
const patientHeader = (values: Record<string, unknown>): Record<string, string> => ({ 'hie-patient-id': patientOf(values) });

/** The patient commands, merged into hie-agent's command table. */
export const PATIENT_COMMANDS: Record<string, PatientCommand> = {
  'patient enrol': {
    usage: 'hie-agent patient enrol (--patient P | HIE_PATIENT_ID) [--png FILE] [--svg FILE]',
    summary: "a one-time enrolment code for a patient's device: the link and its QR code (PNG, SVG)",
    help: `  --png FILE  write the QR code as a PNG (to print or show the patient)
  --svg FILE  write it as an SVG
The code works once, until the time shown (patients.app.codeSeconds); the agent needs patients.app.enabled.`,
    options: { ...CLIENT_OPTIONS, patient: { type: 'string' }, png: { type: 'string' }, svg: { type: 'string' } },
    run: async (values, _p, io) => {
      const body = { patientId: patientOf(values) };
      const e = (await call(target(values), '/v1/patients/enrolments', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })) as { link: string; expiresAt: string; qrPng: string; qrSvg: string };
      if (values['png']) writeFileSync(values['png'] as string, Buffer.from(e.qrPng, 'base64'), { mode: 0o600 });
      if (values['svg']) writeFileSync(values['svg'] as string, e.qrSvg, { mode: 0o600 });
      const files = [values['png'], values['svg']].filter(Boolean).join(' and ');
      print(
        io,
        json(values),
        { link: e.link, expiresAt: e.expiresAt },
        () => `enrolment link (valid until ${e.expiresAt})${files ? `, QR code in ${files}` : ''}:\n${e.link}\n`,
      );
      return 0;
    },
  },
  'patient ask': {
    usage: 'hie-agent patient ask (--patient P | HIE_PATIENT_ID) --to ID [--to ID]... --until DATE [--from DATE] [--purpose CODE]... [--scope TYPE]...',
    summary: 'ask the patient for a consent they sign in the app (pending until they answer)',
    help: `  --to ID        a grantee hospital (repeat for several)
  --until DATE   end of validity (ISO 8601)
  --purpose CODE HL7 PurposeOfUse (repeat; default TREAT)
  --scope TYPE   FHIR resource types, ImagingStudy or Binary (repeat; default everything)`,
    options: {
      ...CLIENT_OPTIONS,
      patient: { type: 'string' },
      to: { type: 'string', multiple: true },
      until: { type: 'string' },
      from: { type: 'string' },
      purpose: { type: 'string', multiple: true },
      scope: { type: 'string', multiple: true },
    },
    run: async (values, _p, io) => {
      const grantees = (values['to'] as string[] | undefined) ?? [];
      if (grantees.length === 0) throw new UsageError('--to is required');
      const body = {
        patientId: patientOf(values),
        grantees,
        validUntil: need(values, 'until'),
        ...(values['from'] ? { validFrom: values['from'] } : {}),
        ...(values['purpose'] ? { purposes: values['purpose'] } : {}),
        ...(values['scope'] ? { scope: values['scope'] } : {}),
      };
      const r = (await call(target(values), '/v1/patients/consent-requests', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })) as RequestView;
      print(io, json(values), r, () => `consent request ${r.id} sent to the patient's app; follow it with: hie-agent patient request ${r.id}\n`);
      return 0;
    },
  },
  'patient requests': {
    usage: 'hie-agent patient requests (--patient P | HIE_PATIENT_ID)',
    summary: "a patient's consent requests, newest first (pending, approved, refused)",
    options: { ...CLIENT_OPTIONS, patient: { type: 'string' } },
    run: async (values, _p, io) => {
      const r = (await call(target(values), '/v1/patients/consent-requests', { headers: patientHeader(values) })) as { requests: RequestView[] };
      print(io, json(values), r, () => r.requests.map(line).join('') || 'no consent requests\n');
      return 0;
    },
  },
  'patient request': {
    usage: 'hie-agent patient request ID',
    summary: 'one consent request and its status (once approved, ID is the consent id)',
    options: CLIENT_OPTIONS,
    run: async (values, positionals, io) => {
      const id = one(positionals, 'request id', 'hie-agent patient request ID');
      const r = (await call(target(values), `/v1/patients/consent-requests/${encodeURIComponent(id)}`)) as RequestView;
      print(io, json(values), r, () => line(r));
      return 0;
    },
  },
  'patient access-log': {
    usage: 'hie-agent patient access-log (--patient P | HIE_PATIENT_ID)',
    summary: "every release of a patient's records (what the patient sees in the app), with its ledger position",
    options: { ...CLIENT_OPTIONS, patient: { type: 'string' } },
    run: async (values, _p, io) => {
      const r = (await call(target(values), '/v1/patients/access-log', { headers: patientHeader(values) })) as { releases: Release[] };
      const text = (x: Release): string =>
        `${x.at}  ${x.exchange}  to ${x.to}  for ${x.purpose}  consent ${x.consent}  ${x.receipt ? JSON.stringify(x.receipt.disposition) : 'no receipt'}  ${x.proof.feed}#${x.proof.seq}\n`;
      print(io, json(values), r, () => r.releases.map(text).join('') || 'no releases\n');
      return 0;
    },
  },
};

/** The help's group line and section for the patient commands. */
export const PATIENT_GROUP = 'patients: enrol a device, ask for consents they sign, their access log';
export const PATIENT_SECTION: [string, string[]] = ['Patients', Object.keys(PATIENT_COMMANDS)];
