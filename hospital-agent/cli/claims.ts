/** `hie-agent claim submit|status|list|respond|eligibility`: insurance claims from the command line (docs/insurers.md). */
import { readFileSync } from 'node:fs';
import { formatAmount } from '../../ledger/index.ts';
import { call, CLIENT_OPTIONS, need, one, patientOf, print, target, UsageError, type CliIo, type Options } from './client.ts';

interface ClaimCommand {
  usage: string;
  summary: string;
  help?: string;
  options: Options;
  run: (values: Record<string, unknown>, positionals: string[], io: CliIo, args: string[]) => Promise<number>;
}

interface ClaimView {
  id: string;
  direction: string;
  peer: string;
  identifier: string;
  status: string;
  amount: number;
  currency: string;
  paid?: number;
  createdAt: string;
  updatedAt: string;
  responses: number | string[];
}

interface EligibilityView {
  id: string;
  direction: string;
  peer: string;
  identifier: string;
  status: string;
  responses: number | string[];
}

const json = (values: Record<string, unknown>): boolean => values['json'] === true;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function claimId(positionals: string[], usage: string): string {
  const id = one(positionals, 'claim id', usage);
  if (!UUID.test(id)) throw new UsageError(`'${id}' is not a claim id (a UUID)`);
  return id;
}

function readResource(path: string, what: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new UsageError(`cannot read the ${what} from ${path}: ${(err as Error).message}`);
  }
}

const line = (c: ClaimView): string =>
  `${c.id}  ${c.direction === 'outgoing' ? 'to' : 'from'} ${c.peer}  ${c.status}  claimed ${formatAmount(c.amount, c.currency)}${
    c.paid !== undefined && c.status !== 'queued' && c.status !== 'sent' ? `  paid ${formatAmount(c.paid, c.currency)}` : ''
  }  ${c.identifier}\n`;

/** The claim commands, merged into hie-agent's command table. */
export const CLAIM_COMMANDS: Record<string, ClaimCommand> = {
  'claim submit': {
    usage: 'hie-agent claim submit --insurer ID (--patient P | HIE_PATIENT_ID) --claim FILE --coverage FILE [--consent ID]',
    summary: 'submit a FHIR Claim with its Coverage to an insurer (needs a payment consent, HPAYMT)',
    help: 'A Claim submitted again under the same Claim.identifier returns the first claim (nothing is sent twice).',
    options: {
      ...CLIENT_OPTIONS,
      insurer: { type: 'string' },
      patient: { type: 'string' },
      claim: { type: 'string' },
      coverage: { type: 'string' },
      consent: { type: 'string' },
    },
    run: async (values, _p, io) => {
      const body = {
        insurer: need(values, 'insurer'),
        patientId: patientOf(values),
        claim: readResource(need(values, 'claim'), 'Claim'),
        coverage: readResource(need(values, 'coverage'), 'Coverage'),
        ...(values['consent'] ? { consentId: values['consent'] } : {}),
      };
      const c = (await call(target(values), '/v1/claims', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })) as ClaimView;
      print(io, json(values), c, () => `claim ${c.id} (${c.status}) to ${c.peer}; follow it with: hie-agent claim status ${c.id}\n`);
      return 0;
    },
  },
  'claim status': {
    usage: 'hie-agent claim status ID',
    summary: "one claim: status, amounts and the insurer's signed responses",
    options: CLIENT_OPTIONS,
    run: async (values, positionals, io) => {
      const c = (await call(target(values), `/v1/claims/${claimId(positionals, 'hie-agent claim status ID')}`)) as ClaimView;
      const n = Array.isArray(c.responses) ? c.responses.length : c.responses;
      print(io, json(values), c, () => `${line(c)}  ${n} signed ClaimResponse(s); updated ${c.updatedAt}\n`);
      return 0;
    },
  },
  'claim list': {
    usage: 'hie-agent claim list [--direction incoming|outgoing]',
    summary: 'claims submitted (outgoing) and, as an insurer, received (incoming), with their outcome',
    options: { ...CLIENT_OPTIONS, direction: { type: 'string' } },
    run: async (values, _p, io) => {
      const d = values['direction'] as string | undefined;
      if (d !== undefined && d !== 'incoming' && d !== 'outgoing') throw new UsageError('--direction must be incoming or outgoing');
      const r = (await call(target(values), `/v1/claims${d ? `?direction=${d}` : ''}`)) as { claims: ClaimView[] };
      print(io, json(values), r, () => r.claims.map(line).join('') || 'no claims\n');
      return 0;
    },
  },
  'claim respond': {
    usage: 'hie-agent claim respond ID --outcome complete|partial|error [--paid MINOR_UNITS] [--disposition TEXT]',
    summary: 'insurer: adjudicate a pended claim (signed and pushed to the hospital; the benefit goes to settlement)',
    help: '  --paid MINOR_UNITS  the benefit paid, in minor units (cents); complete defaults to the claimed total, partial needs it',
    options: { ...CLIENT_OPTIONS, outcome: { type: 'string' }, paid: { type: 'string' }, disposition: { type: 'string' } },
    run: async (values, positionals, io) => {
      const id = claimId(positionals, 'hie-agent claim respond ID --outcome complete|partial|error');
      const paid = values['paid'] as string | undefined;
      if (paid !== undefined && !/^\d{1,15}$/.test(paid)) throw new UsageError('--paid must be a whole number of minor units');
      const body = {
        outcome: need(values, 'outcome'),
        ...(paid !== undefined ? { paid: Number(paid) } : {}),
        ...(values['disposition'] ? { disposition: values['disposition'] } : {}),
      };
      const c = (await call(target(values), `/v1/claims/${id}/response`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })) as ClaimView;
      print(io, json(values), c, () => line(c));
      return 0;
    },
  },
  'claim eligibility': {
    usage: 'hie-agent claim eligibility request|status|list|respond ...',
    summary: 'coverage eligibility before a claim: ask an insurer (CoverageEligibilityRequest), follow it, answer it as the insurer',
    help: [
      '  hie-agent claim eligibility request --insurer ID (--patient P | HIE_PATIENT_ID) --request FILE --coverage FILE [--consent ID]',
      '  hie-agent claim eligibility status ID',
      '  hie-agent claim eligibility list [--direction incoming|outgoing]',
      '  hie-agent claim eligibility respond ID --outcome queued|complete|partial|error [--inforce true|false] [--disposition TEXT]',
      'Needs a payment consent (HPAYMT) with scope CoverageEligibilityRequest and Coverage. queued pends the request; a final outcome follows later.',
    ].join('\n'),
    options: {
      ...CLIENT_OPTIONS,
      insurer: { type: 'string' },
      patient: { type: 'string' },
      request: { type: 'string' },
      coverage: { type: 'string' },
      consent: { type: 'string' },
      direction: { type: 'string' },
      outcome: { type: 'string' },
      inforce: { type: 'string' },
      disposition: { type: 'string' },
    },
    run: async (values, positionals, io) => {
      const [action, ...rest] = positionals;
      const eLine = (r: EligibilityView): string =>
        `${r.id}  ${r.direction === 'outgoing' ? 'to' : 'from'} ${r.peer}  ${r.status}  ${r.identifier}  ${Array.isArray(r.responses) ? r.responses.length : r.responses} signed response(s)\n`;
      const idOf = (usage: string): string => {
        const id = one(rest, 'eligibility request id', usage);
        if (!UUID.test(id)) throw new UsageError(`'${id}' is not an eligibility request id (a UUID)`);
        return id;
      };
      if (action === 'request') {
        const body = {
          insurer: need(values, 'insurer'),
          patientId: patientOf(values),
          request: readResource(need(values, 'request'), 'CoverageEligibilityRequest'),
          coverage: readResource(need(values, 'coverage'), 'Coverage'),
          ...(values['consent'] ? { consentId: values['consent'] } : {}),
        };
        const r = (await call(target(values), '/v1/eligibility', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        })) as EligibilityView;
        print(
          io,
          json(values),
          r,
          () => `eligibility request ${r.id} (${r.status}) to ${r.peer}; follow it with: hie-agent claim eligibility status ${r.id}\n`,
        );
        return 0;
      }
      if (action === 'status') {
        const r = (await call(target(values), `/v1/eligibility/${idOf('hie-agent claim eligibility status ID')}`)) as EligibilityView;
        print(io, json(values), r, () => eLine(r));
        return 0;
      }
      if (action === 'list') {
        const d = values['direction'] as string | undefined;
        if (d !== undefined && d !== 'incoming' && d !== 'outgoing') throw new UsageError('--direction must be incoming or outgoing');
        const r = (await call(target(values), `/v1/eligibility${d ? `?direction=${d}` : ''}`)) as { requests: EligibilityView[] };
        print(io, json(values), r, () => r.requests.map(eLine).join('') || 'no eligibility requests\n');
        return 0;
      }
      if (action === 'respond') {
        const id = idOf('hie-agent claim eligibility respond ID --outcome queued|complete|partial|error');
        const inforce = values['inforce'] as string | undefined;
        if (inforce !== undefined && inforce !== 'true' && inforce !== 'false') throw new UsageError('--inforce must be true or false');
        const body = {
          outcome: need(values, 'outcome'),
          ...(inforce !== undefined ? { inforce: inforce === 'true' } : {}),
          ...(values['disposition'] ? { disposition: values['disposition'] } : {}),
        };
        const r = (await call(target(values), `/v1/eligibility/${id}/response`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        })) as EligibilityView;
        print(io, json(values), r, () => eLine(r));
        return 0;
      }
      throw new UsageError('usage: hie-agent claim eligibility request|status|list|respond ... (see --help)');
    },
  },
};
