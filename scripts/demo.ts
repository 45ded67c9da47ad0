// `npm run demo [-- --size 256MiB] [--keep] [--dir DIR]`: a throwaway federation on this machine (CA,
// relay, three hospital agents, an insurer's agent and a pharmacy's agent as separate processes on loopback) walking
// through consent, a FHIR exchange with its receipt, a revocation, a large imaging transfer, an e-prescription dispensed
// once, an insurance claim submitted and adjudicated, ledger verification, settlement, and an auditor who proves one
// exchange from a proof file with only the CA certificate.
// Exits 0 only if every step really succeeded.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import cliProgress from 'cli-progress';
import { parseSize } from './bench/util.ts';
import { exitAfterCleanup, untilSignal } from './lib/children.ts';
import { startLocalFederation, stopProcs, waitFor, type LocalFederation, type Proc } from './lib/federation.ts';
import { RELAY_ACCOUNT } from '../hospital-agent/engine/payments.ts';
import { dicomFile } from '../test/support/dicom.ts';
import { prescriptionDemo } from './lib/prescription-demo.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const HOSPITALS = ['myongji', 'severance', 'mgh'] as const;
/** The insurer member (docs/insurers.md): same agent, certificate, ledger and relay, role `insurer` in the member directory. */
const INSURER = 'kidi';
/** A pharmacy of the federation (docs/pharmacies.md), role `pharmacy` in the member directory. */
const PHARMACY = 'apotheke';
const MEMBERS = [...HOSPITALS, INSURER, PHARMACY] as const;
type Hospital = (typeof MEMBERS)[number];
const CLAIM = JSON.parse(readFileSync(join(ROOT, 'scripts/fixtures/claim.json'), 'utf8')) as Record<string, unknown>;
const COVERAGE = JSON.parse(readFileSync(join(ROOT, 'scripts/fixtures/coverage.json'), 'utf8')) as Record<string, unknown>;
const BUNDLE = readFileSync(join(ROOT, 'scripts/fixtures/patient-bundle.json'));
const PATIENT = 'SYN-000001';

const say = (text: string): void => {
  process.stdout.write(`${text}\n`);
};
const step = (n: number, text: string): void => say(`\n[${n}] ${text}`);
const ok = (text: string): void => say(`    ✔ ${text}`);

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { size: { type: 'string', default: '256MiB' }, keep: { type: 'boolean', default: false }, dir: { type: 'string' }, help: { type: 'boolean' } },
    strict: true,
  });
  if (values.help) {
    say('Usage: npm run demo [-- --size 256MiB] [--keep] [--dir DIR]');
    return 0;
  }
  const size = parseSize(values.size as string, { defaultUnit: 'MiB' });
  const dir = values.dir ? (mkdirSync(values.dir, { recursive: true }), values.dir) : mkdtempSync(join(tmpdir(), 'hie-demo-'));
  const procs: Proc[] = [];
  let fed: LocalFederation | undefined;
  let success = false;
  try {
    say('HIE relay gateway demo: a local federation of one relay, three hospitals, an insurer and a pharmacy, all on 127.0.0.1.');
    say(`Working directory: ${dir}`);

    step(
      1,
      'The relay operator creates the federation CA, issues certificates and signs the member directory; the relay, three hospital agents, an insurer agent and a pharmacy agent start as separate processes.',
    );
    fed = await startLocalFederation({ dir, hospitals: MEMBERS, roles: { [INSURER]: 'insurer', [PHARMACY]: 'pharmacy' }, onStarted: ok });
    procs.push(...fed.procs);
    const { apis, tokens } = fed;
    const api = (h: Hospital | typeof PHARMACY, path: string, init: RequestInit & { duplex?: 'half' } = {}) => fed!.api(h, path, init);

    step(2, `Myongji records the patient's consent: Severance may receive ${PATIENT}'s records for treatment.`);
    const granted = await api('myongji', '/v1/consents', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ patientId: PATIENT, grantee: 'severance', purposes: ['TREAT'], validUntil: new Date(Date.now() + 30 * 86_400_000).toISOString() }),
    });
    if (granted.status !== 201) throw new Error(`consent refused: ${JSON.stringify(granted.body)}`);
    const consentId = granted.body['id'] as string;
    ok(`consent ${consentId} (the ledger holds the patient only as an HMAC: ${String(granted.body['patientHash']).slice(0, 16)}...)`);

    step(3, 'Myongji sends a synthetic FHIR R4 patient bundle to Severance, end-to-end encrypted.');
    const sent = await api('myongji', '/v1/exchanges', {
      method: 'POST',
      headers: {
        'content-type': 'application/fhir+json',
        'hie-recipient': 'severance',
        'hie-patient-id': PATIENT,
        'hie-consent-id': consentId,
        'idempotency-key': 'demo-bundle-1',
      },
      body: BUNDLE,
    });
    if (sent.status !== 202) throw new Error(`send refused: ${JSON.stringify(sent.body)}`);
    const bundleId = sent.body['id'] as string;
    const delivered = await waitFor('the bundle to be delivered', async () => {
      const x = (await api('myongji', `/v1/exchanges/${bundleId}`)).body;
      if (x['status'] === 'failed') throw new Error(`exchange failed: ${JSON.stringify(x['failure'])}`);
      return x['status'] === 'delivered' ? x : undefined;
    });
    const receipt = delivered['receipt'] as { receivedAt: string; contentHash: string; recipient: string };
    ok(
      `exchange ${bundleId} delivered; receipt signed by ${receipt.recipient} at ${receipt.receivedAt} (content sha-256 ${String(delivered['receiptContentSha256'])})`,
    );
    const inboxItem = (await api('severance', `/v1/inbox/${bundleId}`)).body;
    const content = Buffer.from(
      await (await fetch(`${apis['severance']}/v1/inbox/${bundleId}/content`, { headers: { authorization: `Bearer ${tokens['severance']}` } })).arrayBuffer(),
    );
    if (!content.equals(BUNDLE)) throw new Error('the delivered bundle differs from the one sent');
    ok(
      `Severance's inbox: ${inboxItem['bytes']} bytes from ${inboxItem['from']}, signature ${String((inboxItem['verification'] as { signature?: string })?.signature)}, byte-identical`,
    );

    step(4, "MGH asks Severance for the same patient's records; Severance holds a consent for MGH and answers.");
    const summaryScope = ['Patient', 'Condition', 'Observation', 'MedicationStatement', 'AllergyIntolerance'];
    const mghConsent = await api('severance', '/v1/consents', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        patientId: PATIENT,
        grantee: 'mgh',
        purposes: ['TREAT'],
        scope: summaryScope,
        validUntil: new Date(Date.now() + 86_400_000).toISOString(),
      }),
    });
    if (mghConsent.status !== 201) throw new Error('consent at severance refused');
    const asked = await api('mgh', '/v1/requests', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ holder: 'severance', patientId: PATIENT, purpose: 'TREAT', scope: summaryScope }),
    });
    if (asked.status !== 202) throw new Error(`request refused: ${JSON.stringify(asked.body)}`);
    const requestId = asked.body['id'] as string;
    const incoming = await waitFor('the request at severance', async () => {
      const r = (await api('severance', `/v1/requests/${requestId}`)).body;
      if (r['status'] === 'refused') throw new Error(`severance refused the request: ${String(r['code'])}`);
      return r['status'] === 'accepted' ? r : undefined;
    });
    ok(`severance's EHR sees request ${requestId} from mgh, covered by consent ${String(incoming['consentId'])}`);
    const answered = await api('severance', '/v1/exchanges', {
      method: 'POST',
      headers: {
        'content-type': 'application/fhir+json',
        'hie-recipient': 'mgh',
        'hie-patient-id': PATIENT,
        'hie-consent-id': incoming['consentId'] as string,
        'hie-request-id': requestId,
      },
      body: BUNDLE,
    });
    if (answered.status !== 202) throw new Error(`answer refused: ${JSON.stringify(answered.body)}`);
    const answerId = answered.body['id'] as string;
    await waitFor('the answer to arrive at mgh', async () => ((await api('mgh', `/v1/inbox/${answerId}`)).status === 200 ? true : undefined));
    ok(`answer ${answerId} delivered to mgh's inbox; the request is now ${String((await api('severance', `/v1/requests/${requestId}`)).body['status'])}`);

    step(5, 'The patient revokes the consent at Myongji; the next send is refused before anything leaves.');
    const revoked = await api('myongji', `/v1/consents/${consentId}`, { method: 'DELETE' });
    if (revoked.status !== 200) throw new Error(`revocation failed: ${JSON.stringify(revoked.body)}`);
    ok(`consent revoked at ${revoked.body['revokedAt']}`);
    const refused = await api('myongji', '/v1/exchanges', {
      method: 'POST',
      headers: { 'content-type': 'application/fhir+json', 'hie-recipient': 'severance', 'hie-patient-id': PATIENT, 'hie-consent-id': consentId },
      body: BUNDLE,
    });
    const refusal = (refused.body['error'] as { code?: string } | undefined)?.code;
    if (refused.status !== 403 || refusal !== 'ERR_CONSENT_REVOKED')
      throw new Error(`expected ERR_CONSENT_REVOKED, got ${refused.status} ${JSON.stringify(refused.body)}`);
    ok(`refused with ${refused.status} ${refusal}`);

    step(6, `Severance sends a large synthetic imaging study (${(size / 2 ** 20).toFixed(0)} MiB) to MGH under a new consent.`);
    const imagingConsent = await api('severance', '/v1/consents', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        patientId: 'SYN-000002',
        grantee: 'mgh',
        purposes: ['TREAT'],
        scope: ['ImagingStudy'],
        validUntil: new Date(Date.now() + 86_400_000).toISOString(),
      }),
    });
    if (imagingConsent.status !== 201) throw new Error('imaging consent refused');
    const hash = createHash('sha256');
    let produced = 0;
    let x = 0x9e3779b9;
    // The study's first bytes are a DICOM Part 10 header naming the patient (the agent reads Patient ID from it
    // before anything leaves); the rest stands in for pixel data.
    const header = dicomFile({ patientId: 'SYN-000002' });
    const source = new Readable({
      read() {
        if (produced >= size) return void this.push(null);
        if (produced === 0 && size >= header.length) {
          produced = header.length;
          hash.update(header);
          return void this.push(header);
        }
        const n = Math.min(1 << 20, size - produced);
        const buf = Buffer.allocUnsafe(n);
        for (let i = 0; i + 4 <= n; i += 4) {
          x ^= x << 13;
          x ^= x >>> 17;
          x ^= x << 5;
          buf.writeUInt32LE(x >>> 0, i);
        }
        produced += n;
        hash.update(buf);
        this.push(buf);
      },
    });
    const bar = new cliProgress.SingleBar(
      { format: '    upload |{bar}| {percentage}% {value_mb}/{total_mb} MB {rate} MB/s ETA {eta_formatted}', hideCursor: true },
      cliProgress.Presets.shades_classic,
    );
    const t0 = Date.now();
    let uploaded = 0;
    bar.start(size, 0, { value_mb: '0', total_mb: (size / 1e6).toFixed(0), rate: '0' });
    const counter = new Transform({
      transform(chunk: Buffer, _e, cb) {
        uploaded += chunk.length;
        bar.update(uploaded, {
          value_mb: (uploaded / 1e6).toFixed(0),
          total_mb: (size / 1e6).toFixed(0),
          rate: (uploaded / 1e6 / Math.max(0.001, (Date.now() - t0) / 1000)).toFixed(0),
        });
        cb(null, chunk);
      },
    });
    const big = await api('severance', '/v1/exchanges', {
      method: 'POST',
      headers: {
        'content-type': 'application/dicom',
        'content-length': String(size),
        'hie-recipient': 'mgh',
        'hie-patient-id': 'SYN-000002',
        'hie-consent-id': imagingConsent.body['id'] as string,
      },
      body: source.pipe(counter) as unknown as RequestInit['body'],
      duplex: 'half',
    });
    bar.stop();
    if (big.status !== 202) throw new Error(`imaging send refused: ${JSON.stringify(big.body)}`);
    const bigId = big.body['id'] as string;
    await waitFor(
      'the imaging study to be delivered',
      async () => {
        const s = (await api('severance', `/v1/exchanges/${bigId}`)).body;
        if (s['status'] === 'failed') throw new Error(`exchange failed: ${JSON.stringify(s['failure'])}`);
        return s['status'] === 'delivered' ? s : undefined;
      },
      600_000,
    );
    const seconds = (Date.now() - t0) / 1000;
    const got = createHash('sha256');
    for await (const chunk of (await fetch(`${apis['mgh']}/v1/inbox/${bigId}/content`, { headers: { authorization: `Bearer ${tokens['mgh']}` } }))
      .body as unknown as AsyncIterable<Uint8Array>)
      got.update(chunk);
    if (got.digest('hex') !== hash.digest('hex')) throw new Error('the imaging study arrived altered');
    ok(`delivered with a verified receipt in ${seconds.toFixed(1)} s (${(size / 1e6 / seconds).toFixed(0)} MB/s end to end), SHA-256 identical at MGH`);

    step(7, `Myongji prescribes for ${PATIENT}; the pharmacy ${PHARMACY} dispenses it once (docs/pharmacies.md).`);
    await prescriptionDemo((m, path, init) => fed!.api(m, path, init), 'myongji', PHARMACY, PATIENT, ok);

    step(8, `Severance bills ${PATIENT}'s insurer ${INSURER}: a FHIR R4 Claim with its Coverage, under the patient's consent for payment (HPAYMT).`);
    await waitFor('the member directory at severance', async () =>
      ((await api('severance', '/v1/federation')).body['directory'] as { sequence?: number } | null)?.sequence ? true : undefined,
    );
    const payment = await api('severance', '/v1/consents', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        patientId: PATIENT,
        grantee: INSURER,
        purposes: ['HPAYMT'],
        scope: ['Claim', 'Coverage'],
        validUntil: new Date(Date.now() + 86_400_000).toISOString(),
      }),
    });
    if (payment.status !== 201) throw new Error(`payment consent refused: ${JSON.stringify(payment.body)}`);
    const claimBody = JSON.stringify({ insurer: INSURER, patientId: PATIENT, claim: CLAIM, coverage: COVERAGE });
    const submit = (): Promise<{ status: number; body: Record<string, unknown> }> =>
      api('severance', '/v1/claims', { method: 'POST', headers: { 'content-type': 'application/json' }, body: claimBody });
    const submitted = await submit();
    if (submitted.status !== 202) throw new Error(`claim refused: ${JSON.stringify(submitted.body)}`);
    const claimId = submitted.body['id'] as string;
    await waitFor('the claim to be pended at the insurer', async () =>
      (await api('severance', `/v1/claims/${claimId}`)).body['status'] === 'queued' ? true : undefined,
    );
    ok(
      `claim ${claimId} (${String(submitted.body['identifier'])}, 135.57 USD): ${INSURER} filed it for its claims system and answered with a signed ClaimResponse, queued`,
    );
    const repeat = await submit();
    if (repeat.status !== 200 || repeat.body['id'] !== claimId)
      throw new Error(`a repeated Claim.identifier gave ${repeat.status} ${JSON.stringify(repeat.body)}`);
    ok('the same Claim submitted again returns the first claim (idempotent on Claim.identifier): nothing is sent twice');
    const notInsurer = await api('severance', '/v1/claims', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ insurer: 'mgh', patientId: PATIENT, claim: CLAIM, coverage: COVERAGE }),
    });
    const notInsurerCode = (notInsurer.body['error'] as { code?: string } | undefined)?.code;
    if (notInsurer.status !== 422 || notInsurerCode !== 'ERR_MEMBER_NOT_INSURER')
      throw new Error(`a claim to a hospital gave ${notInsurer.status} ${notInsurerCode}`);
    ok(`a claim to mgh (a hospital, not an insurer) is refused: ${notInsurer.status} ${notInsurerCode}`);
    const adjudicated = await api(INSURER, `/v1/claims/${claimId}/response`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ outcome: 'complete', disposition: 'Claim settled as submitted' }),
    });
    if (adjudicated.status !== 200) throw new Error(`adjudication refused: ${JSON.stringify(adjudicated.body)}`);
    const final = await waitFor('the final ClaimResponse at severance', async () => {
      const c = (await api('severance', `/v1/claims/${claimId}`)).body;
      return c['status'] === 'complete' ? c : undefined;
    });
    const jws = (final['responses'] as string[]).at(-1) as string;
    const jwsHeader = JSON.parse(Buffer.from(jws.split('.')[0] as string, 'base64url').toString('utf8')) as { alg: string; typ: string; kid: string };
    ok(
      `${INSURER}'s claims system adjudicated it: complete, ${(Number(final['paid']) / 100).toFixed(2)} USD paid; severance verified the ClaimResponse (JWS ${jwsHeader.alg}, ${jwsHeader.typ}, key ${jwsHeader.kid.slice(0, 12)}...)`,
    );

    step(9, 'Ledgers replicate through the relay; every agent verifies every feed offline.');
    await waitFor(
      'ledger replication',
      async () => {
        const views = await Promise.all(
          MEMBERS.map(async (h) =>
            JSON.stringify(((await api(h, '/v1/ledger/status')).body['feeds'] as Array<{ feed: string; seq: number }>).map((f) => [f.feed, f.seq]).sort()),
          ),
        );
        return new Set(views).size === 1 && JSON.parse(views[0] as string).length === MEMBERS.length ? true : undefined;
      },
      60_000,
    );
    for (const h of MEMBERS) {
      const v = (await api(h, '/v1/ledger/verify?grace=0')).body as { ok: boolean; findings: unknown[]; stats: { feeds: number; entries: number } };
      if (!v.ok) throw new Error(`ledger of ${h} has findings: ${JSON.stringify(v.findings)}`);
      ok(`${h}: ${v.stats.feeds} feeds, ${v.stats.entries} entries, links, signatures, consents and receipts all verify`);
    }

    step(10, 'Settlement statements for this month, computed from the ledger.');
    const period = new Date().toISOString().slice(0, 7);
    let fees = 0;
    let releaseFees = 0;
    let claimsOwed = 0;
    for (const h of MEMBERS) {
      const s = (await api(h, `/v1/ledger/settlement?period=${period}`)).body as {
        lines: Array<{ counterparty: string; currency: string; owes: number; owed: number }>;
      };
      for (const l of s.lines) {
        say(
          `    ${h.padEnd(10)} owes ${l.counterparty.padEnd(15)} ${(l.owes / 100).toFixed(2)} ${l.currency}, is owed ${(l.owed / 100).toFixed(2)} ${l.currency}`,
        );
        if (l.counterparty === RELAY_ACCOUNT) fees += l.owes;
        else if (h === 'mgh' && l.counterparty === 'severance') releaseFees += l.owes;
        else if (h === 'severance' && l.counterparty === INSURER) claimsOwed += l.owed;
      }
      if (s.lines.length === 0) say(`    ${h.padEnd(10)} no charges`);
    }
    if (fees <= 0) throw new Error('no transport fees were charged');
    ok(`relay operator is owed ${(fees / 100).toFixed(2)} EUR in total; every charge comes from a relay-signed usage statement`);
    if (releaseFees <= 0) throw new Error('no release fee was charged for the answered records request');
    ok(`mgh owes severance ${(releaseFees / 100).toFixed(2)} EUR: the tariff's release fee for answering its records request`);
    if (claimsOwed !== 13557) throw new Error(`severance's statement shows ${claimsOwed} minor units owed by ${INSURER}, not the 13557 adjudicated`);
    ok(`${INSURER} owes severance ${(claimsOwed / 100).toFixed(2)} USD: the adjudicated claim, beside the relay's fees in the same statement`);

    step(11, `An external auditor, holding only the federation CA certificate, checks exchange ${bundleId} from a proof file Myongji hands over.`);
    // The proof is served once peers have witnessed the checkpoint it is proven against (a gossip round or two).
    const proofText = await waitFor('a proof witnessed by a peer', async () => {
      const r = await fetch(`${apis['myongji']}/v1/ledger/proofs/exchange/${bundleId}`, { headers: { authorization: `Bearer ${tokens['myongji']}` } });
      const text = await r.text();
      if (r.status !== 200 || r.headers.get('hie-proof-verified') !== 'true') return undefined;
      const types = (JSON.parse(text) as { entries: Array<{ entry: string }> }).entries.map(
        (e) => (JSON.parse(Buffer.from(e.entry, 'base64').toString('utf8')) as { type: string }).type,
      );
      return types.includes('receipt') && types.includes('exchange.received') ? text : undefined;
    });
    const proofFile = JSON.parse(proofText) as { entries: unknown[]; checkpoints: unknown[]; bundles: unknown[] };
    ok(
      `proof file: ${proofFile.entries.length} entries, ${proofFile.checkpoints.length} witnessed checkpoints, ${proofFile.bundles.length} key bundles (${proofText.length} bytes, nothing else of any feed)`,
    );
    const auditor = mkdtempSync(join(tmpdir(), 'hie-auditor-'));
    try {
      writeFileSync(join(auditor, 'proof.json'), proofText);
      copyFileSync(join(dir, 'myongji', 'certs', 'ca.crt.pem'), join(auditor, 'ca.crt.pem'));
      const verdict = spawnSync(process.execPath, [join(ROOT, 'bin', 'hie-ledger.js'), 'verify-proof', 'proof.json', '--ca', 'ca.crt.pem'], {
        cwd: auditor,
        encoding: 'utf8',
      });
      say(`    $ hie-ledger verify-proof proof.json --ca ca.crt.pem    (in ${auditor}: no database, no network)`);
      for (const line of verdict.stdout.trim().split('\n')) say(`      ${line}`);
      if (verdict.status !== 0) throw new Error(`the auditor's verifier exited ${verdict.status}: ${verdict.stderr.trim()}`);
      ok('the auditor proved the exchange, its consent and its receipt, against checkpoints a peer witnessed');
    } finally {
      rmSync(auditor, { recursive: true, force: true });
    }

    success = true;
    if (values.keep) {
      say('\nThe federation keeps running (Ctrl-C stops it). Talk to it:');
      for (const h of MEMBERS) say(`  ${h.padEnd(10)} API ${apis[h]}  token ${tokens[h]}`);
      say(`  relay admin: http://127.0.0.1:${fed.adminPort}/metrics`);
      say(`\n  curl -H "Authorization: Bearer ${tokens['myongji']}" ${apis['myongji']}/v1/ledger/status`);
      say(`  HIE_AGENT_TOKEN=${tokens['severance']} npx hie-agent inbox --api ${apis['severance']}`);
      say(`  HIE_AGENT_TOKEN=${tokens['myongji']} npx hie-agent settlement --api ${apis['myongji']}`);
      say(`  npx hie-certs list --dir ${join(dir, 'pki')}`);
      await untilSignal();
    }
    return 0;
  } catch (err) {
    say(`\n    ✘ ${(err as Error).message}`);
    for (const p of procs.length ? procs : ((err as { procs?: Proc[] }).procs ?? [])) {
      // Warnings and errors first (pino levels >= 40), then the latest lines.
      const important = p.log.filter((l) => !l.startsWith('{') || /"level":(4|5|6)\d/.test(l)).slice(-10);
      if (p.log.length) say(`\n--- ${p.name}: warnings and last lines ---\n${[...important, ...p.log.slice(-5)].join('\n')}`);
    }
    return 1;
  } finally {
    step(12, 'Shutting everything down.');
    await stopProcs(procs);
    ok('relay and agents stopped');
    if (!values.dir && !values.keep) rmSync(dir, { recursive: true, force: true });
    say(success ? '\nDemo finished: every step succeeded.' : '\nDemo FAILED.');
  }
}

main().then(
  (code) => exitAfterCleanup(code),
  (err: unknown) => {
    process.stderr.write(`demo: error: ${(err as Error).message}\n`);
    return exitAfterCleanup(1);
  },
);
