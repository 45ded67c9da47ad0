// One job: the `hie-agent rx` commands: e-prescriptions at the prescriber (issue, status, list, abort) and at a pharmacy (accept, held, reject, close).
import { readFileSync, writeFileSync } from 'node:fs';
import { call, CLIENT_OPTIONS, need, one, patientOf, print, target, UsageError, type CliIo, type Options } from './client.ts';

interface TaskView {
  id: string;
  status: string;
  pharmacy?: string;
  cancelledBy?: string;
  createdAt: string;
  accessCode?: string;
  token?: string;
  qr?: string;
  receipt?: string;
}
interface HeldView {
  prescriber: string;
  id: string;
  status: string;
  acceptedAt: string;
  receipt?: string;
  medicationRequest?: unknown;
  dispensed?: { completed: string; medicationDispense: string };
}

/** A command of the group, shaped as cli.ts's table wants it. */
export interface RxCommand {
  usage: string;
  summary: string;
  help?: string;
  options: Options;
  run: (values: Record<string, unknown>, positionals: string[], io: CliIo, args: string[]) => Promise<number>;
}

const json = (values: Record<string, unknown>): boolean => values['json'] === true;
const enc = encodeURIComponent;
const post = (body: unknown): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const taskLine = (t: TaskView): string =>
  `${t.id}  ${t.status}${t.pharmacy ? `  at ${t.pharmacy}` : ''}${t.cancelledBy ? `  by the ${t.cancelledBy}` : ''}  ${t.createdAt}\n`;
const heldLine = (h: HeldView): string => `${h.prescriber}/${h.id}  ${h.status}  accepted ${h.acceptedAt}\n`;

function readJson(path: string, what: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new UsageError(`${what}: cannot read ${path} as JSON (${(err as Error).message})`);
  }
}

/** The `rx` group. */
export const RX_COMMANDS: Record<string, RxCommand> = {
  'rx issue': {
    usage: 'hie-agent rx issue --request FILE (--patient P | HIE_PATIENT_ID) [--qr FILE.png]',
    summary: 'issue an e-prescription (a FHIR MedicationRequest); prints the access code and token for the patient',
    help: 'The access code is shown once: the agent keeps only its hash. --qr writes the token as a QR code PNG to hand to the patient.',
    options: { ...CLIENT_OPTIONS, request: { type: 'string' }, patient: { type: 'string' }, qr: { type: 'string' } },
    run: async (values, _p, io) => {
      const body = { patientId: patientOf(values), medicationRequest: readJson(need(values, 'request'), '--request'), qr: values['qr'] !== undefined };
      const t = (await call(target(values), '/v1/prescriptions', post(body))) as TaskView;
      const qr = values['qr'] as string | undefined;
      if (qr && t.qr) writeFileSync(qr, Buffer.from(t.qr.replace(/^data:image\/png;base64,/, ''), 'base64'), { mode: 0o600 });
      const { qr: _qr, ...shown } = t;
      print(
        io,
        json(values),
        shown,
        () => `prescription ${t.id} ready\n  access code ${t.accessCode}\n  token       ${t.token}\n${qr ? `  QR code     ${qr}\n` : ''}`,
      );
      return 0;
    },
  },
  'rx status': {
    usage: 'hie-agent rx status ID',
    summary: 'one prescription this agent issued: ready, in-progress (at which pharmacy), completed, cancelled',
    options: CLIENT_OPTIONS,
    run: async (values, positionals, io) => {
      const t = (await call(target(values), `/v1/prescriptions/${enc(one(positionals, 'prescription id', 'hie-agent rx status ID'))}`)) as TaskView;
      print(io, json(values), t, () => taskLine(t));
      return 0;
    },
  },
  'rx list': {
    usage: 'hie-agent rx list [--status ready|in-progress|completed|cancelled]',
    summary: 'prescriptions this agent issued, newest first',
    options: { ...CLIENT_OPTIONS, status: { type: 'string' } },
    run: async (values, _p, io) => {
      const s = values['status'] as string | undefined;
      const r = (await call(target(values), `/v1/prescriptions${s ? `?status=${enc(s)}` : ''}`)) as { prescriptions: TaskView[] };
      print(io, json(values), r, () => r.prescriptions.map(taskLine).join('') || 'no prescriptions\n');
      return 0;
    },
  },
  'rx abort': {
    usage: 'hie-agent rx abort ID [--access-code CODE]',
    summary: 'cancel a ready prescription: as the prescriber, or for the patient with their access code',
    options: { ...CLIENT_OPTIONS, 'access-code': { type: 'string' } },
    run: async (values, positionals, io) => {
      const id = one(positionals, 'prescription id', 'hie-agent rx abort ID');
      const code = values['access-code'] as string | undefined;
      const t = (await call(target(values), `/v1/prescriptions/${enc(id)}/abort`, post(code ? { accessCode: code } : {}))) as TaskView;
      print(io, json(values), t, () => `prescription ${t.id} cancelled by the ${t.cancelledBy ?? 'prescriber'}\n`);
      return 0;
    },
  },
  'rx accept': {
    usage: 'hie-agent rx accept (--token TOKEN | --prescriber ID --id ID --access-code CODE)',
    summary: "as a pharmacy: accept a patient's prescription (exactly one pharmacy gets it); prints the MedicationRequest",
    options: { ...CLIENT_OPTIONS, token: { type: 'string' }, prescriber: { type: 'string' }, id: { type: 'string' }, 'access-code': { type: 'string' } },
    run: async (values, _p, io) => {
      const token = values['token'] as string | undefined;
      const body = token ? { token } : { prescriber: need(values, 'prescriber'), id: need(values, 'id'), accessCode: need(values, 'access-code') };
      const h = (await call(target(values), '/v1/dispensing', post(body))) as HeldView;
      print(io, json(values), h, () => `prescription ${h.prescriber}/${h.id} in progress here\n${JSON.stringify(h.medicationRequest, null, 2)}\n`);
      return 0;
    },
  },
  'rx held': {
    usage: 'hie-agent rx held',
    summary: 'as a pharmacy: the prescriptions this pharmacy accepted (in-progress, rejected, completed)',
    options: CLIENT_OPTIONS,
    run: async (values, _p, io) => {
      const r = (await call(target(values), '/v1/dispensing')) as { prescriptions: HeldView[] };
      print(io, json(values), r, () => r.prescriptions.map(heldLine).join('') || 'no prescriptions held\n');
      return 0;
    },
  },
  'rx reject': {
    usage: 'hie-agent rx reject PRESCRIBER ID',
    summary: 'as a pharmacy: hand a prescription back (ready again for another pharmacy)',
    options: CLIENT_OPTIONS,
    run: async (values, positionals, io) => {
      const [prescriber, id] = positionals;
      if (!prescriber || !id || positionals.length !== 2) throw new UsageError('usage: hie-agent rx reject PRESCRIBER ID');
      const h = (await call(target(values), `/v1/dispensing/${enc(prescriber)}/${enc(id)}/reject`, post({}))) as HeldView;
      print(io, json(values), h, () => `prescription ${h.prescriber}/${h.id} handed back\n`);
      return 0;
    },
  },
  'rx close': {
    usage: 'hie-agent rx close PRESCRIBER ID --dispense FILE',
    summary: "as a pharmacy: close a prescription with a FHIR MedicationDispense; prints the prescriber's signed receipt",
    options: { ...CLIENT_OPTIONS, dispense: { type: 'string' } },
    run: async (values, positionals, io) => {
      const [prescriber, id] = positionals;
      if (!prescriber || !id || positionals.length !== 2) throw new UsageError('usage: hie-agent rx close PRESCRIBER ID --dispense FILE');
      const body = { medicationDispense: readJson(need(values, 'dispense'), '--dispense') };
      const h = (await call(target(values), `/v1/dispensing/${enc(prescriber)}/${enc(id)}/close`, post(body))) as HeldView;
      print(io, json(values), h, () => `prescription ${h.prescriber}/${h.id} dispensed at ${h.dispensed?.completed ?? '?'}\n  receipt ${h.receipt ?? ''}\n`);
      return 0;
    },
  },
};

/** The group's one-line description and its section of the global help. */
export const RX_GROUP = 'e-prescriptions: issue, status, list, abort (prescriber); accept, held, reject, close (pharmacy)';
export const RX_SECTION: [string, string[]] = ['E-prescriptions', Object.keys(RX_COMMANDS)];
