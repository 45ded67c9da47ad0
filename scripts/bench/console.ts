// `npm run bench -- console [exchanges]`: p50/p99 answer time of every compliance-console view (and the audit API)
// with N exchanges (default 100,000) in the ledger: each a release under one of many consents (patients
// spread over them), its receipt and its charge, a few failed; real LevelDB, the agent's real API handler
// on loopback, signed in as a compliance officer; with N/10 claims and N/20 prescriptions in the agent's stores and
// their entries in the ledger. Target: every view under 300 ms at 100,000 exchanges.
import { once } from 'node:events';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { createKeyBundle, generateAgentKeys, loadIdentity } from '../../certs/index.ts';
import { Ledger, type AppendInput } from '../../ledger/index.ts';
import { createApiHandler } from '../../hospital-agent/api/http.ts';
import { fhirAuditRoutes } from '../../hospital-agent/api/routes/fhir-audit.ts';
import { AccessLog, consoleRouter, LedgerIndex } from '../../hospital-agent/console/index.ts';
import { patientHash } from '../../hospital-agent/consent/patient.ts';
import { claimChargeId, ClaimStore, type ClaimRecord } from '../../hospital-agent/claims/index.ts';
import { PrescriptionStore, type PrescriptionTask } from '../../hospital-agent/prescriptions/index.ts';
import { StateDb } from '../../hospital-agent/store/state-db.ts';
import { makeFederation } from '../../test/support/federation.ts';
import { tempDir } from '../../test/support/tmp.ts';
import { percentile } from './util.ts';
import type { BenchTable } from './types.ts';

const DEFAULT_EXCHANGES = 100_000;
const PATIENTS = 5_000;
const CONSENTS_PER_PATIENT = 1;
const REQUESTS_PER_VIEW = 30;
const CONCURRENCY = 256;
const TARGET_MS = 300;
const TOKEN = 'bench-officer-token-0123456789abcdef012345';

const hex = (s: string): string => createHash('sha256').update(s).digest('hex');
const b64 = (s: string): string => createHash('sha256').update(s).digest('base64url');
const PEERS = ['bravo', 'charlie', 'delta'];

/** Runs the console bench. */
export async function run(args: string[]): Promise<BenchTable[]> {
  const total = args[0] !== undefined ? Number(args[0]) : DEFAULT_EXCHANGES;
  if (!Number.isInteger(total) || total < 100) throw new Error(`exchanges must be a whole number >= 100, got ${args[0]}`);
  const tmp = tempDir('hie-bench-console-');
  try {
    const fed = makeFederation(tmp.dir, ['alpha', ...PEERS]);
    const caPem = readFileSync(fed.caPath, 'utf8');
    const keys = generateAgentKeys();
    const bundle = await createKeyBundle(loadIdentity(fed.agents['alpha']!), keys, { now: new Date(Date.now() - 60_000) });
    const ledger = await Ledger.open({ path: `${tmp.dir}/alpha`, trust: { caPem }, author: { feed: 'alpha', signingKey: keys.signing.privateKey, bundle } });
    const secret = randomBytes(32);
    const hashPatient = (id: string): string => patientHash(secret, id);

    // The ledger: consents first, then every exchange with its receipt (or failure) and charge.
    let t = performance.now();
    const patients = Math.min(PATIENTS, total);
    const consentOf = (p: number): string => `consent-${String(p).padStart(8, '0')}`;
    const inputs: AppendInput[] = [];
    const start = new Date(Date.now() - 30 * 86_400_000).toISOString();
    for (let p = 0; p < patients * CONSENTS_PER_PATIENT; p++) {
      inputs.push({
        type: 'consent.granted',
        body: { consent: consentOf(p), patient: hashPatient(`MRN-${p}`), grantees: PEERS, purposes: ['TREAT'], scope: ['*'], validFrom: start },
      });
    }
    for (let i = 0; i < total; i++) {
      const exchange = `bench-${String(i).padStart(10, '0')}`;
      const p = i % patients;
      const to = PEERS[i % PEERS.length] as string;
      inputs.push({
        type: 'exchange.sent',
        body: {
          exchange,
          to,
          consent: consentOf(p),
          patient: hashPatient(`MRN-${p}`),
          purpose: 'TREAT',
          contentType: 'application/fhir+json',
          bytes: 2000 + (i % 5000),
          hash: hex(exchange),
        },
      });
      if (i % 50 === 7) inputs.push({ type: 'exchange.failed', body: { exchange, peer: to, reason: 'timeout' } });
      else {
        inputs.push({ type: 'receipt', body: { exchange, from: to, disposition: 'delivered', hash: hex(exchange) } });
        inputs.push({
          type: 'payment.charged',
          body: {
            charge: `charge-${String(i).padStart(10, '0')}`,
            exchange,
            kind: 'transport',
            payer: 'alpha',
            payee: 'relay-operator',
            amount: 10,
            currency: 'EUR',
          },
        });
      }
    }
    // Claims to one insurer (a tenth of the exchanges; every fourth still queued) and prescriptions (a twentieth; most completed).
    const state = new StateDb(`${tmp.dir}/state`);
    await state.open();
    const claimStore = new ClaimStore(state);
    const rxStore = new PrescriptionStore(state);
    const claimIds: string[] = [];
    const rxIds: string[] = [];
    const claimCount = Math.floor(total / 10);
    const rxCount = Math.floor(total / 20);
    for (let i = 0; i < claimCount; i++) {
      const id = randomUUID();
      claimIds.push(id);
      const p = i % patients;
      const queued = i % 4 === 3;
      const at = new Date(Date.parse(start) + i * 1000).toISOString();
      const record: ClaimRecord = {
        id,
        direction: 'outgoing',
        peer: 'delta',
        identifier: `urn:bench:claim|C-${i}`,
        status: queued ? 'queued' : 'complete',
        amount: 10_000 + i,
        currency: 'USD',
        paid: queued ? 0 : 10_000 + i,
        hash: b64(id),
        createdAt: at,
        updatedAt: at,
        consentId: consentOf(p),
        patientHash: hashPatient(`MRN-${p}`),
        claim: {},
        coverage: {},
        responses: [],
      };
      await claimStore.create(record);
      inputs.push({
        type: 'claim.submitted',
        body: { claim: id, insurer: 'delta', consent: consentOf(p), patient: hashPatient(`MRN-${p}`), hash: b64(id), amount: record.amount, currency: 'USD' },
      });
      inputs.push({
        type: 'claim.responded',
        body: {
          claim: id,
          hospital: 'alpha',
          insurer: 'delta',
          outcome: queued ? 'queued' : 'complete',
          hash: b64(`r${id}`),
          amount: record.paid ?? 0,
          currency: 'USD',
        },
      });
      if (!queued) {
        inputs.push({
          type: 'payment.charged',
          body: { charge: claimChargeId(id), exchange: id, kind: 'claim', payer: 'delta', payee: 'alpha', amount: record.amount, currency: 'USD' },
        });
      }
    }
    for (let i = 0; i < rxCount; i++) {
      const id = randomUUID();
      rxIds.push(id);
      const p = i % patients;
      const done = i % 5 !== 0;
      const at = new Date(Date.parse(start) + i * 1000).toISOString();
      const task: PrescriptionTask = {
        id,
        status: done ? 'completed' : 'ready',
        accessCodeHash: hex(`code${id}`),
        patient: hashPatient(`MRN-${p}`),
        medicationRequest: 'bench',
        medicationRequestHash: b64(id),
        createdAt: at,
        updatedAt: at,
        transitions: done ? 3 : 1,
        ...(done ? { pharmacy: 'charlie', acceptedAt: at, completedAt: at, dispenseHash: b64(`d${id}`) } : {}),
      };
      await rxStore.create(task);
      inputs.push({ type: 'prescription.issued', body: { prescription: id, patient: task.patient, hash: task.medicationRequestHash } });
      if (done) {
        inputs.push({ type: 'prescription.accepted', body: { prescription: id, pharmacy: 'charlie' } });
        inputs.push({ type: 'prescription.completed', body: { prescription: id, pharmacy: 'charlie', hash: b64(`d${id}`), receipt: b64(`r${id}`) } });
      }
    }
    for (let i = 0; i < inputs.length; i += CONCURRENCY) await Promise.all(inputs.slice(i, i + CONCURRENCY).map((x) => ledger.append(x)));
    const fillMs = performance.now() - t;

    const index = new LedgerIndex(ledger, 'alpha');
    const accessLog = new AccessLog(`${tmp.dir}/console/access.log`);
    const handler = createApiHandler({
      tokens: [{ name: 'officer', token: TOKEN, role: 'compliance' }],
      logger: { info: () => undefined, warn: () => undefined, error: () => undefined },
      v1: express.Router(),
      openapi: {},
      fhir: fhirAuditRoutes(index, ledger, hashPatient, accessLog),
      console: consoleRouter({
        self: 'alpha',
        ledger,
        index,
        hashPatient,
        accessLog,
        trust: () => ({ caPem }),
        claims: claimStore,
        prescriptions: rxStore,
        graceSeconds: 90_000,
      }),
    });
    const server = createServer(handler).listen(0, '127.0.0.1');
    await once(server, 'listening');
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      // Sign in as a browser would.
      const form = await fetch(`${base}/console/sign-in`);
      const pre = /hie_console_signin=([^;]+)/.exec(form.headers.getSetCookie().join('\n'))?.[1] ?? '';
      const csrfPre = /name="_csrf" value="([^"]+)"/.exec(await form.text())?.[1] ?? '';
      const signed = await fetch(`${base}/console/sign-in`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: `hie_console_signin=${pre}` },
        body: new URLSearchParams({ _csrf: csrfPre, token: TOKEN }).toString(),
      });
      const sid = /hie_console=([^;]+)/.exec(signed.headers.getSetCookie().join('\n'))?.[1];
      if (!sid) throw new Error(`sign-in failed (${signed.status})`);
      const cookie = `hie_console=${sid}`;
      const get = async (path: string, bearer = false): Promise<number> => {
        const s = performance.now();
        const res = await fetch(`${base}${path}`, { headers: bearer ? { authorization: `Bearer ${TOKEN}` } : { cookie } });
        await res.arrayBuffer();
        if (res.status !== 200) throw new Error(`${path} answered ${res.status}`);
        return performance.now() - s;
      };
      // The first query builds the index from the ledger (once per agent start): measured apart.
      t = performance.now();
      await get('/console/');
      const indexMs = performance.now() - t;
      const ph = hashPatient('MRN-42');
      const page2 = /rel="next" href="([^"]+)"/
        .exec(await (await fetch(`${base}/console/exchanges`, { headers: { cookie } })).text())?.[1]
        ?.replace(/&amp;/g, '&');
      const one = `bench-${String(Math.floor(total / 2)).padStart(10, '0')}`;
      const claimsPage2 = /rel="next" href="([^"]+)"/
        .exec(await (await fetch(`${base}/console/claims`, { headers: { cookie } })).text())?.[1]
        ?.replace(/&amp;/g, '&');
      const oneClaim = claimIds[Math.floor(claimIds.length / 2)] as string;
      const oneRx = rxIds[Math.floor(rxIds.length / 2)] as string;
      const period = new Date().toISOString().slice(0, 7);
      const views: Array<[string, string, boolean?]> = [
        ['overview', '/console/'],
        ['exchanges (all, first page + summary)', '/console/exchanges'],
        ['exchanges (second page, keyset)', page2 ?? '/console/exchanges'],
        ['exchanges (one patient)', `/console/exchanges?ph=${ph}`],
        ['exchanges (one counterparty, sent)', '/console/exchanges?counterparty=bravo&direction=sent'],
        ['exchange timeline', `/console/exchanges/${one}`],
        ['exchange proof download', `/console/exchanges/${one}/proof`],
        ['consents (one patient)', `/console/consents?ph=${ph}`],
        ['audit events (newest 50)', '/console/audit'],
        ['audit events (one patient)', `/console/audit?ph=${ph}`],
        ['settlements (this month)', `/console/settlements?period=${period}`],
        ['integrity', '/console/integrity'],
        ['patient access report', `/console/report?ph=${ph}`],
        ['access log', '/console/access'],
        [`claims (all ${claimCount.toLocaleString('en')}, first page + summary)`, '/console/claims'],
        ['claims (second page, keyset)', claimsPage2 ?? '/console/claims'],
        ['claims (queued)', '/console/claims?status=queued'],
        ['one claim with its entries', `/console/claims/${oneClaim}`],
        [`prescriptions (all ${rxCount.toLocaleString('en')}, first page)`, '/console/prescriptions'],
        ['one prescription with its transitions', `/console/prescriptions/${oneRx}`],
        ['GET /fhir/AuditEvent?_count=100', '/fhir/AuditEvent?_count=100', true],
        ['GET /fhir/AuditEvent?patient=', '/fhir/AuditEvent?patient=MRN-42', true],
        ['GET /fhir/Consent?patient=', '/fhir/Consent?patient=MRN-42', true],
      ];
      const rows: Array<Record<string, string | number>> = [];
      let worst = 0;
      for (const [name, path, bearer] of views) {
        const times: number[] = [];
        for (let i = 0; i < REQUESTS_PER_VIEW; i++) times.push(await get(path, bearer ?? false));
        const p99 = percentile(times, 99);
        worst = Math.max(worst, p99);
        rows.push({ view: name, 'p50 ms': percentile(times, 50).toFixed(1), 'p99 ms': p99.toFixed(1), met: p99 < TARGET_MS ? 'yes' : 'NO' });
      }
      t = performance.now();
      const exportMs = await get('/console/exchanges.csv');
      t = performance.now() - t;
      const size = index.size();
      return [
        {
          title: `console: each view with ${total.toLocaleString('en')} exchanges in the ledger (${size.entries.toLocaleString('en')} entries, ${REQUESTS_PER_VIEW} requests per view)`,
          rows,
          notes: [
            `Ledger filled in ${(fillMs / 1000).toFixed(1)} s; the first query built the console's index in ${(indexMs / 1000).toFixed(2)} s (once per agent start; later queries read only new entries).`,
            `CSV export of all ${total.toLocaleString('en')} exchanges: ${exportMs.toFixed(0)} ms (not a view; streamed).`,
            `Target: every view p99 < ${TARGET_MS} ms at 100,000 exchanges.`,
          ],
          summary: [
            {
              metric: `console: slowest view p99 (${total.toLocaleString('en')} exchanges)`,
              value: `${worst.toFixed(0)} ms`,
              target: `< ${TARGET_MS} ms`,
              met: worst < TARGET_MS,
            },
          ],
        },
      ];
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await ledger.close();
      await state.close();
    }
  } finally {
    tmp.cleanup();
  }
}
