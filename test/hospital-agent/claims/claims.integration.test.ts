import { expect } from 'chai';
import { execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { KeyBundle } from '../../../certs/index.ts';
import { claimChargeId, verifyClaimResponse, ClaimSignatureError } from '../../../hospital-agent/claims/index.ts';
import { KeyRing } from '../../../hospital-agent/crypto/index.ts';
import { validateR4 } from '../../../hospital-agent/fhir/index.ts';
import { RELAY_ACCOUNT } from '../../../hospital-agent/engine/payments.ts';
import type { BodyOf } from '../../../ledger/index.ts';
import { TEST_TOKEN, waitFor, type TestNetwork } from '../../support/agents.ts';
import { claimFor, coverage, grantPaymentConsent, startClaimsNetwork, submitClaim } from '../../support/claims.ts';
import { bundleFor } from '../../support/fhir.ts';
import { tempDir } from '../../support/tmp.ts';

const HOSPITAL = 'alpha';
const OTHER = 'bravo';
const INSURER = 'insurer';
const PATIENT = 'SYN-000001';
const BIN = fileURLToPath(new URL('../../../bin/hie-agent.js', import.meta.url));

/** Runs `hie-agent` as a child process (asynchronously: the agents it calls run in this process). */
function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, HIE_AGENT_TOKEN: TEST_TOKEN, HIE_DEBUG: '', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += String(d)));
    child.stderr.on('data', (d) => (stderr += String(d)));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

interface ClaimView {
  id: string;
  status: string;
  peer: string;
  amount: number;
  paid?: number;
  currency: string;
  responses: string[] | number;
}

describe('insurance claims between a hospital and an insurer member', function () {
  this.timeout(180_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;
  let consent: string;

  const claim = async (id: string, at: string): Promise<ClaimView> => (await (await net.api(at, `/v1/claims/${id}`)).json()) as ClaimView;
  const claims = async (at: string, direction: string): Promise<ClaimView[]> =>
    ((await (await net.api(at, `/v1/claims?direction=${direction}`)).json()) as { claims: ClaimView[] }).claims;
  const entries = async (at: string, type: 'claim.submitted' | 'claim.received' | 'claim.responded' | 'payment.charged', claimId: string) =>
    (await net.agents[at]!.ledger.byType(type, at))
      .map((e) => e.entry.body as Record<string, unknown>)
      .filter((b) => b['claim'] === claimId || b['exchange'] === claimId);
  /** An auditor's key lookup: the CA certificate and the insurer's key bundle as its ledger feed carries it (replicated to the hospital). */
  const auditorLookup = async () => {
    const ring = new KeyRing({ caPem: net.agents[HOSPITAL]!.identity().caPem });
    const genesis = await waitFor(async () => (await net.agents[HOSPITAL]!.ledger.byType('genesis', INSURER))[0], 30_000, 'insurer feed replicated');
    await ring.add((genesis.entry.body as { bundle: KeyBundle }).bundle);
    return ring.signerLookup();
  };
  const respond = (id: string, body: Record<string, unknown>): Promise<Response> =>
    net.api(INSURER, `/v1/claims/${id}/response`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

  before(async function () {
    tmp = tempDir();
    // Full replication: the federation-wide balance below reads every charge at every agent (private mode is tested in private-replication).
    ({ net } = await startClaimsNetwork(tmp.dir, { [HOSPITAL]: 'hospital', [OTHER]: 'hospital', [INSURER]: 'insurer' }, { replicationMode: 'full' }));
    consent = await grantPaymentConsent(net, HOSPITAL, INSURER, PATIENT);
  });
  after(async function () {
    await net?.close();
    tmp?.cleanup();
  });

  it('submits a claim, gets a signed queued ClaimResponse, then the final one, each verifiable by an auditor and cross-checked with OpenSSL', async function () {
    const res = await submitClaim(net, HOSPITAL, { insurer: INSURER, patientId: PATIENT, consentId: consent, claim: claimFor('RT-1'), coverage: coverage() });
    expect(res.status, await res.clone().text()).to.equal(202);
    const sent = (await res.json()) as ClaimView;
    expect(sent).to.include({ status: 'sent', peer: INSURER, amount: 13557, currency: 'USD' });
    expect(res.headers.get('location')).to.equal(`/v1/claims/${sent.id}`);

    // The insurer's claims system sees it queued; the hospital holds the signed queued response.
    const incoming = await waitFor(async () => (await claims(INSURER, 'incoming')).find((c) => c.id === sent.id), 30_000, 'claim at the insurer');
    expect(incoming).to.include({ status: 'queued', peer: HOSPITAL, amount: 13557 });
    const queued = await waitFor(async () => ((await claim(sent.id, HOSPITAL)).status === 'queued' ? claim(sent.id, HOSPITAL) : undefined), 30_000, 'queued');
    const lookup = await auditorLookup();
    const first = await verifyClaimResponse((queued.responses as string[])[0]!, INSURER, lookup);
    expect(first.response).to.include({ resourceType: 'ClaimResponse', outcome: 'queued', id: sent.id });
    expect(validateR4(first.response)).to.deep.equal([]);

    const answered = await respond(sent.id, { outcome: 'complete', disposition: 'Claim settled as submitted' });
    expect(answered.status, await answered.clone().text()).to.equal(200);
    const final = await waitFor(async () => ((await claim(sent.id, HOSPITAL)).status === 'complete' ? claim(sent.id, HOSPITAL) : undefined), 30_000, 'final');
    expect(final.paid).to.equal(13557);
    const jws = (final.responses as string[]).at(-1)!;
    const verified = await verifyClaimResponse(jws, INSURER, lookup);
    expect(verified.response).to.deep.include({ outcome: 'complete', disposition: 'Claim settled as submitted' });
    expect((verified.response['payment'] as { amount: unknown }).amount).to.deep.equal({ value: 135.57, currency: 'USD' });
    expect(validateR4(verified.response)).to.deep.equal([]);

    // OpenSSL checks the Ed25519 signature over the JWS signing input with the insurer's public key.
    const [h, p, s] = jws.split('.') as [string, string, string];
    const signer = (await lookup(INSURER, first.kid, new Date()))!;
    writeFileSync(join(tmp.dir, 'input'), `${h}.${p}`);
    writeFileSync(join(tmp.dir, 'sig'), Buffer.from(s, 'base64url'));
    writeFileSync(join(tmp.dir, 'pub.pem'), signer.signingKey.export({ type: 'spki', format: 'pem' }));
    const ok = execFileSync('openssl', [
      'pkeyutl',
      '-verify',
      '-pubin',
      '-inkey',
      join(tmp.dir, 'pub.pem'),
      '-rawin',
      '-in',
      join(tmp.dir, 'input'),
      '-sigfile',
      join(tmp.dir, 'sig'),
    ]);
    expect(ok.toString()).to.match(/Signature Verified Successfully/);

    // A response changed in transit does not verify.
    const forged = Buffer.from(p, 'base64url').toString('utf8').replace('"complete"', '"partial"');
    const tampered = `${h}.${Buffer.from(forged).toString('base64url')}.${s}`;
    let refused: unknown;
    await verifyClaimResponse(tampered, INSURER, lookup).catch((err) => (refused = err));
    expect(refused).to.be.instanceOf(ClaimSignatureError);

    // Every step is in the ledger of the party that took it: hashes, parties and amounts, no patient id.
    const submitted = await entries(HOSPITAL, 'claim.submitted', sent.id);
    expect(submitted).to.have.length(1);
    expect(submitted[0]).to.include({ insurer: INSURER, consent, amount: 13557, currency: 'USD' });
    expect((await entries(INSURER, 'claim.received', sent.id))[0]).to.include({ hospital: HOSPITAL, amount: 13557, hash: submitted[0]!['hash'] });
    const outcomes = (at: string): Promise<unknown[]> => entries(at, 'claim.responded', sent.id).then((l) => l.map((b) => b['outcome']));
    expect(await outcomes(INSURER)).to.deep.equal(['queued', 'complete']);
    await waitFor(async () => (await outcomes(HOSPITAL)).length === 2, 30_000, 'responses logged at the hospital');
    expect(await outcomes(HOSPITAL)).to.deep.equal(['queued', 'complete']);
    const charge = { charge: claimChargeId(sent.id), kind: 'claim', payer: INSURER, payee: HOSPITAL, amount: 13557, currency: 'USD' };
    expect(await entries(INSURER, 'payment.charged', sent.id)).to.deep.equal([{ ...charge, exchange: sent.id }]);
    expect(await entries(HOSPITAL, 'payment.charged', sent.id)).to.deep.equal([{ ...charge, exchange: sent.id }]);
    for (const at of [HOSPITAL, INSURER]) {
      const feed = await net.agents[at]!.ledger.byType('claim.submitted');
      expect(JSON.stringify(feed)).not.to.include(PATIENT);
    }

    // Adjudicated once: a second answer is refused with its code and changes nothing.
    const again = await respond(sent.id, { outcome: 'error' });
    expect(again.status).to.equal(409);
    expect(((await again.json()) as { error: { code: string } }).error.code).to.equal('ERR_CLAIM_STATE');
    expect((await claim(sent.id, INSURER)).status).to.equal('complete');
  });

  it('refuses a claim the patient has not consented to for payment (HPAYMT), and logs and sends nothing', async function () {
    const treatOnly = await grantPaymentConsent(net, HOSPITAL, INSURER, 'SYN-000002', ['TREAT']);
    const before = (await claims(HOSPITAL, 'outgoing')).length;
    const refused = await submitClaim(net, HOSPITAL, {
      insurer: INSURER,
      patientId: 'SYN-000002',
      consentId: treatOnly,
      claim: claimFor('NC-1'),
      coverage: coverage(),
    });
    expect(refused.status).to.equal(403);
    expect(((await refused.json()) as { error: { code: string } }).error.code).to.equal('ERR_CONSENT_SCOPE');
    const none = await submitClaim(net, HOSPITAL, { insurer: INSURER, patientId: 'SYN-000003', claim: claimFor('NC-2'), coverage: coverage() });
    expect(none.status).to.equal(403);
    expect(((await none.json()) as { error: { code: string } }).error.code).to.equal('ERR_CONSENT_MISSING');
    expect(await claims(HOSPITAL, 'outgoing')).to.have.length(before);
  });

  it('refuses a claim to a member that is not an insurer (422), and bad claims with their codes', async function () {
    await grantPaymentConsent(net, HOSPITAL, OTHER, PATIENT);
    const toHospital = await submitClaim(net, HOSPITAL, { insurer: OTHER, patientId: PATIENT, claim: claimFor('NI-1'), coverage: coverage() });
    expect(toHospital.status).to.equal(422);
    expect(((await toHospital.json()) as { error: { code: string } }).error.code).to.equal('ERR_MEMBER_NOT_INSURER');

    const noTotal = claimFor('NI-2');
    delete noTotal['total'];
    const res = await submitClaim(net, HOSPITAL, { insurer: INSURER, patientId: PATIENT, claim: noTotal, coverage: coverage() });
    expect(res.status).to.equal(422);
    const outcome = (await res.json()) as { resourceType: string; issue: Array<{ expression: string[] }> };
    expect(outcome.resourceType).to.equal('OperationOutcome');
    expect(outcome.issue[0]!.expression).to.deep.equal(['Claim.total']);

    const badStatus = { ...claimFor('NI-3'), status: 'finished' };
    const invalid = await submitClaim(net, HOSPITAL, { insurer: INSURER, patientId: PATIENT, claim: badStatus, coverage: coverage() });
    expect(invalid.status).to.equal(422);
    expect(((await invalid.json()) as { resourceType: string }).resourceType).to.equal('OperationOutcome');

    // A patient id with a system and no value is a bad request (400), not an internal error.
    const noValue = await submitClaim(net, HOSPITAL, { insurer: INSURER, patientId: 'urn:oid:1.2.3|', claim: claimFor('NI-4'), coverage: coverage() });
    expect(noValue.status, await noValue.clone().text()).to.equal(400);
    expect(((await noValue.json()) as { error: { code: string } }).error.code).to.equal('ERR_BAD_REQUEST');
  });

  it('answers a repeated Claim.identifier with the first claim, and the insurer files it once', async function () {
    const body = { insurer: INSURER, patientId: PATIENT, claim: claimFor('DUP-1'), coverage: coverage() };
    const first = await submitClaim(net, HOSPITAL, body);
    expect(first.status).to.equal(202);
    const id = ((await first.json()) as ClaimView).id;
    const repeats = await Promise.all([1, 2, 3].map(() => submitClaim(net, HOSPITAL, { ...body, claim: claimFor('DUP-1', 99) })));
    for (const r of repeats) {
      expect(r.status).to.equal(200);
      expect((await r.json()) as ClaimView).to.include({ id, amount: 13557 });
    }
    await waitFor(async () => (await claims(INSURER, 'incoming')).some((c) => c.id === id), 30_000, 'claim at the insurer');
    expect((await claims(HOSPITAL, 'outgoing')).filter((c) => c.id === id)).to.have.length(1);
    expect(await entries(HOSPITAL, 'claim.submitted', id)).to.have.length(1);
    expect(await entries(INSURER, 'claim.received', id)).to.have.length(1);
  });

  it('answers a long poll (Prefer: wait): the submission with the queued response, a GET with If-None-Match at the final one, 304 when nothing changed', async function () {
    const body = { insurer: INSURER, patientId: PATIENT, consentId: consent, claim: claimFor('LP-1'), coverage: coverage() };
    const res = await net.api(HOSPITAL, '/v1/claims', {
      method: 'POST',
      headers: { 'content-type': 'application/json', prefer: 'wait=20' },
      body: JSON.stringify(body),
    });
    expect(res.status, await res.clone().text()).to.equal(202);
    expect(res.headers.get('preference-applied')).to.equal('wait=20');
    const queued = (await res.json()) as ClaimView;
    // Not `sent`: the answer waited for the insurer's signed queued response.
    expect(queued.status).to.equal('queued');
    expect(queued.responses).to.equal(1);

    const now = await net.api(HOSPITAL, `/v1/claims/${queued.id}`);
    const tag = now.headers.get('etag')!;
    expect(tag).to.match(/^"[\w-]{27}"$/);
    // Nothing changes for a second: 304 with the same tag, after the wait.
    const t0 = Date.now();
    const same = await net.api(HOSPITAL, `/v1/claims/${queued.id}`, { headers: { 'if-none-match': tag, prefer: 'wait=1' } });
    expect(same.status).to.equal(304);
    expect(same.headers.get('etag')).to.equal(tag);
    expect(Date.now() - t0).to.be.at.least(900);
    // Without Prefer: wait, If-None-Match answers at once.
    expect((await net.api(HOSPITAL, `/v1/claims/${queued.id}`, { headers: { 'if-none-match': tag } })).status).to.equal(304);

    // A long poll open while the insurer adjudicates: answered with the final response, not after its 20 s.
    const polled = net.api(HOSPITAL, `/v1/claims/${queued.id}`, { headers: { 'if-none-match': tag, prefer: 'wait=20' } });
    await new Promise((r) => setTimeout(r, 200));
    const t1 = Date.now();
    // Refused (`error`, nothing paid), so the federation's settlement below stays what the other claims make it.
    expect((await respond(queued.id, { outcome: 'error', disposition: 'Not covered' })).status).to.equal(200);
    const final = await polled;
    expect(final.status).to.equal(200);
    expect(Date.now() - t1).to.be.below(15_000);
    expect(final.headers.get('etag')).to.not.equal(tag);
    expect(((await final.json()) as ClaimView).status).to.equal('error');
    // An unknown claim is 404 at once, not after the wait.
    const missing = await net.api(HOSPITAL, '/v1/claims/00000000-0000-4000-8000-000000000000', { headers: { 'if-none-match': '"x"', prefer: 'wait=20' } });
    expect(missing.status).to.equal(404);
  });

  it('delivers a pended claim its final response after the hospital was away, and pays a partial benefit', async function () {
    const res = await submitClaim(net, HOSPITAL, { insurer: INSURER, patientId: PATIENT, claim: claimFor('PEND-1', 200), coverage: coverage() });
    const id = ((await res.json()) as ClaimView).id;
    await waitFor(async () => (await claim(id, HOSPITAL)).status === 'queued', 30_000, 'queued at the hospital');
    await net.agents[HOSPITAL]!.close();
    const answered = await respond(id, { outcome: 'partial', paid: 15000 });
    expect(answered.status, await answered.clone().text()).to.equal(200);
    await net.startAgent(HOSPITAL);
    const final = await waitFor(
      async () => ((await claim(id, HOSPITAL)).status === 'partial' ? claim(id, HOSPITAL) : undefined),
      30_000,
      'final after restart',
    );
    expect(final.paid).to.equal(15000);
    expect((await verifyClaimResponse((final.responses as string[]).at(-1)!, INSURER, await auditorLookup())).response['outcome']).to.equal('partial');
  });

  it('runs claim submit, status, list and respond from the command line', async function () {
    const api = (id: string): string[] => ['--api', `http://127.0.0.1:${net.agents[id]!.apiPort}`];
    writeFileSync(join(tmp.dir, 'claim.json'), JSON.stringify(claimFor('CLI-1', 50)));
    writeFileSync(join(tmp.dir, 'coverage.json'), JSON.stringify(coverage()));
    const args = [
      'claim',
      'submit',
      ...api(HOSPITAL),
      '--insurer',
      INSURER,
      '--claim',
      join(tmp.dir, 'claim.json'),
      '--coverage',
      join(tmp.dir, 'coverage.json'),
      '--json',
    ];
    const submitted = await cli(args, { HIE_PATIENT_ID: PATIENT });
    expect(submitted.code, submitted.stderr).to.equal(0);
    const id = (JSON.parse(submitted.stdout) as ClaimView).id;
    const again = await cli(args.slice(0, -1), { HIE_PATIENT_ID: PATIENT });
    expect(again.stdout).to.include(`claim ${id} `);
    await waitFor(async () => (await claim(id, INSURER)).status === 'queued', 30_000, 'queued at the insurer');
    const listed = await cli(['claim', 'list', ...api(INSURER), '--direction', 'incoming']);
    expect(listed.stdout).to.match(new RegExp(`${id}  from ${HOSPITAL}  queued  claimed 50.00 USD`));
    const responded = await cli(['claim', 'respond', id, ...api(INSURER), '--outcome', 'partial', '--paid', '4000', '--disposition', 'co-payment applies']);
    expect(responded.code, responded.stderr).to.equal(0);
    expect(responded.stdout).to.include('partial  claimed 50.00 USD  paid 40.00 USD');
    const twice = await cli(['claim', 'respond', id, ...api(INSURER), '--outcome', 'complete']);
    expect(twice.code).to.not.equal(0);
    expect(twice.stderr).to.include('ERR_CLAIM_STATE');
    await waitFor(async () => (await claim(id, HOSPITAL)).status === 'partial', 30_000, 'partial at the hospital');
    const status = await cli(['claim', 'status', id, ...api(HOSPITAL)]);
    expect(status.stdout).to.include(`${id}  to ${INSURER}  partial  claimed 50.00 USD  paid 40.00 USD`);
    expect(status.stdout).to.include('2 signed ClaimResponse(s)');
    const help = await cli(['claim', '--help']);
    expect(help.stdout).to.include('hie-agent claim submit --insurer ID');
  });

  it('keeps every ledger verifiable and settles to zero across the federation, the insurer owing the hospital beside the relay fees', async function () {
    // An exchange too, so relay fees are in the statements.
    const c = await (
      await net.api(HOSPITAL, '/v1/consents', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          patientId: PATIENT,
          grantee: OTHER,
          purposes: ['TREAT'],
          scope: ['*'],
          validUntil: new Date(Date.now() + 86_400_000).toISOString(),
        }),
      })
    ).json();
    const sent = await net.api(HOSPITAL, '/v1/exchanges', {
      method: 'POST',
      headers: { 'content-type': 'application/fhir+json', 'hie-recipient': OTHER, 'hie-patient-id': PATIENT, 'hie-consent-id': (c as { id: string }).id },
      body: bundleFor(PATIENT),
    });
    const x = ((await sent.json()) as { id: string }).id;
    await waitFor(
      async () => ((await (await net.api(HOSPITAL, `/v1/exchanges/${x}`)).json()) as { status: string }).status === 'delivered',
      30_000,
      'delivered',
    );
    const ids = [HOSPITAL, OTHER, INSURER];
    // Every agent holds every feed and every charge.
    const charges = async (at: string): Promise<number> => (await net.agents[at]!.ledger.byType('payment.charged')).length;
    await waitFor(
      async () => {
        const n = await Promise.all(ids.map(charges));
        return n.every((v) => v === n[0] && v > 0) && ids.every((id) => net.agents[id]!.ledger.feeds().length === ids.length);
      },
      30_000,
      'ledgers replicated',
    );
    const period = new Date().toISOString().slice(0, 7);
    type Statement = { lines: Array<{ counterparty: string; currency: string; owes: number; owed: number }>; totals: Array<{ currency: string; net: number }> };
    const statements: Record<string, Statement> = {};
    for (const id of ids) {
      const verify = (await (await net.api(id, '/v1/ledger/verify?grace=0')).json()) as { ok: boolean };
      expect(verify.ok, `${id}: ${JSON.stringify(verify).slice(0, 1500)}`).to.equal(true);
      statements[id] = (await (await net.api(id, `/v1/ledger/settlement?period=${period}`)).json()) as Statement;
    }
    const hospitalLines = statements[HOSPITAL]!.lines;
    const fromInsurer = hospitalLines.find((l) => l.counterparty === INSURER && l.currency === 'USD');
    expect(fromInsurer).to.include({ owed: 13557 + 15000 + 4000, owes: 0 });
    expect(hospitalLines.some((l) => l.counterparty === RELAY_ACCOUNT && l.owes > 0)).to.equal(true);
    expect(statements[INSURER]!.lines.find((l) => l.counterparty === HOSPITAL && l.currency === 'USD')).to.include({ owes: 13557 + 15000 + 4000 });
    // Per currency, the members' nets and the relay operator's earnings sum to zero.
    const sums = new Map<string, number>();
    for (const id of ids) {
      for (const t of statements[id]!.totals) sums.set(t.currency, (sums.get(t.currency) ?? 0) + t.net);
      for (const l of statements[id]!.lines) if (l.counterparty === RELAY_ACCOUNT) sums.set(l.currency, (sums.get(l.currency) ?? 0) + l.owes - l.owed);
    }
    expect(sums.get('USD')).to.equal(0);
    expect([...sums.values()].every((v) => v === 0)).to.equal(true);
    const claimed = (await net.agents[HOSPITAL]!.ledger.byType('payment.charged'))
      .map((e) => e.entry.body as BodyOf<'payment.charged'>)
      .filter((b) => b.kind === 'claim');
    expect(new Set(claimed.map((b) => b.charge)).size).to.equal(3);
  });
});
