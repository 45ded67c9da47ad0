import { expect } from 'chai';
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { KeyBundle } from '../../../certs/index.ts';
import { ClaimSignatureError, verifyClaimResponse, verifyEligibilityResponse } from '../../../hospital-agent/claims/index.ts';
import { KeyRing } from '../../../hospital-agent/crypto/index.ts';
import { validateR4 } from '../../../hospital-agent/fhir/index.ts';
import { TEST_TOKEN, waitFor, type TestNetwork } from '../../support/agents.ts';
import { coverage, grantPaymentConsent, startClaimsNetwork } from '../../support/claims.ts';
import { tempDir } from '../../support/tmp.ts';

const HOSPITAL = 'alpha';
const OTHER = 'bravo';
const INSURER = 'insurer';
const PATIENT = 'SYN-000001';

/** HL7's R4 example CoverageEligibilityRequest 52345 (scripts/fixtures), under identifier `value`. */
function requestFor(value: string): Record<string, unknown> {
  const r = JSON.parse(readFileSync(fileURLToPath(new URL('../../../scripts/fixtures/eligibility-request.json', import.meta.url)), 'utf8')) as Record<
    string,
    unknown
  >;
  r['identifier'] = [{ system: 'http://happyvalley.com/coverageelegibilityrequest', value }];
  return r;
}

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

interface View {
  id: string;
  status: string;
  peer: string;
  responses: string[] | number;
}

describe('coverage eligibility between a hospital and an insurer member', function () {
  this.timeout(180_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;
  let consent: string;

  const post = (at: string, path: string, body: unknown): Promise<Response> =>
    net.api(at, path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const ask = (body: Record<string, unknown>, at = HOSPITAL): Promise<Response> => post(at, '/v1/eligibility', body);
  const respond = (id: string, body: Record<string, unknown>): Promise<Response> => post(INSURER, `/v1/eligibility/${id}/response`, body);
  const view = async (id: string, at: string): Promise<View> => (await (await net.api(at, `/v1/eligibility/${id}`)).json()) as View;
  const list = async (at: string, direction: string): Promise<View[]> =>
    ((await (await net.api(at, `/v1/eligibility?direction=${direction}`)).json()) as { requests: View[] }).requests;
  const statusAt = (id: string, at: string, status: string): Promise<View> =>
    waitFor(async () => ((await view(id, at)).status === status ? view(id, at) : undefined), 30_000, `${status} at ${at}`);
  const entries = async (at: string, type: 'eligibility.requested' | 'eligibility.received' | 'eligibility.responded', id: string) =>
    (await net.agents[at]!.ledger.byType(type, at)).map((e) => e.entry.body as Record<string, unknown>).filter((b) => b['request'] === id);
  const code = async (res: Response): Promise<string> => ((await res.json()) as { error: { code: string } }).error.code;
  const auditorLookup = async () => {
    const ring = new KeyRing({ caPem: net.agents[HOSPITAL]!.identity().caPem });
    const genesis = await waitFor(async () => (await net.agents[HOSPITAL]!.ledger.byType('genesis', INSURER))[0], 30_000, 'insurer feed replicated');
    await ring.add((genesis.entry.body as { bundle: KeyBundle }).bundle);
    return ring.signerLookup();
  };
  const grant = async (patientId: string, grantee: string, purposes: string[], scope: string[]): Promise<string> => {
    const res = await post(HOSPITAL, '/v1/consents', { patientId, grantee, purposes, scope, validUntil: new Date(Date.now() + 86_400_000).toISOString() });
    const text = await res.text();
    if (res.status !== 201) throw new Error(`consent grant answered ${res.status}: ${text}`);
    return (JSON.parse(text) as { id: string }).id;
  };

  before(async function () {
    tmp = tempDir();
    ({ net } = await startClaimsNetwork(tmp.dir, { [HOSPITAL]: 'hospital', [OTHER]: 'hospital', [INSURER]: 'insurer' }));
    consent = await grant(PATIENT, INSURER, ['HPAYMT'], ['CoverageEligibilityRequest', 'Coverage']);
  });
  after(async function () {
    await net?.close();
    tmp?.cleanup();
  });

  it('pended then final: a signed CoverageEligibilityResponse an auditor and OpenSSL verify; every step in the ledger without the patient', async function () {
    const res = await ask({ insurer: INSURER, patientId: PATIENT, consentId: consent, request: requestFor('EL-1'), coverage: coverage() });
    expect(res.status, await res.clone().text()).to.equal(202);
    const sent = (await res.json()) as View;
    expect(sent).to.include({ status: 'sent', peer: INSURER });
    expect(res.headers.get('location')).to.equal(`/v1/eligibility/${sent.id}`);

    // The insurer's claims system finds it, pends it, then answers.
    const incoming = await waitFor(async () => (await list(INSURER, 'incoming')).find((r) => r.id === sent.id), 30_000, 'request at the insurer');
    expect(incoming).to.include({ status: 'sent', peer: HOSPITAL });
    expect((await respond(sent.id, { outcome: 'queued' })).status).to.equal(200);
    const queued = await statusAt(sent.id, HOSPITAL, 'queued');
    const lookup = await auditorLookup();
    const first = await verifyEligibilityResponse((queued.responses as string[])[0]!, INSURER, lookup);
    expect(first.response).to.include({ resourceType: 'CoverageEligibilityResponse', outcome: 'queued', id: sent.id });
    expect(validateR4(first.response)).to.deep.equal([]);
    const pendedTwice = await respond(sent.id, { outcome: 'queued' });
    expect(pendedTwice.status).to.equal(409);
    expect(await code(pendedTwice)).to.equal('ERR_CLAIM_STATE');

    expect((await respond(sent.id, { outcome: 'complete', inforce: true, disposition: 'Policy is currently in effect.' })).status).to.equal(200);
    const final = await statusAt(sent.id, HOSPITAL, 'complete');
    const jws = (final.responses as string[]).at(-1)!;
    const verified = await verifyEligibilityResponse(jws, INSURER, lookup);
    expect(verified.response).to.deep.include({ outcome: 'complete', disposition: 'Policy is currently in effect.' });
    expect(verified.response['insurance']).to.deep.equal([{ coverage: { reference: 'Coverage/9876B1' }, inforce: true }]);
    expect(verified.response['request']).to.deep.equal({ identifier: { system: 'http://happyvalley.com/coverageelegibilityrequest', value: 'EL-1' } });
    expect(validateR4(verified.response)).to.deep.equal([]);

    const [h, p, s] = jws.split('.') as [string, string, string];
    const signer = (await lookup(INSURER, verified.kid, new Date()))!;
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

    // Tampered, or passed off as a ClaimResponse: refused.
    const forged = `${h}.${Buffer.from(Buffer.from(p, 'base64url').toString('utf8').replace('"complete"', '"error"')).toString('base64url')}.${s}`;
    let refused: unknown;
    await verifyEligibilityResponse(forged, INSURER, lookup).catch((err) => (refused = err));
    expect(refused).to.be.instanceOf(ClaimSignatureError);
    refused = undefined;
    await verifyClaimResponse(jws, INSURER, lookup).catch((err) => (refused = err));
    expect(refused).to.be.instanceOf(ClaimSignatureError);

    const requested = await entries(HOSPITAL, 'eligibility.requested', sent.id);
    expect(requested).to.have.length(1);
    expect(requested[0]).to.include({ insurer: INSURER, consent });
    expect((await entries(INSURER, 'eligibility.received', sent.id))[0]).to.deep.equal({ request: sent.id, hospital: HOSPITAL, hash: requested[0]!['hash'] });
    const outcomes = (at: string): Promise<unknown[]> => entries(at, 'eligibility.responded', sent.id).then((l) => l.map((b) => b['outcome']));
    expect(await outcomes(INSURER)).to.deep.equal(['queued', 'complete']);
    await waitFor(async () => (await outcomes(HOSPITAL)).length === 2, 30_000, 'responses logged at the hospital');
    expect(await outcomes(HOSPITAL)).to.deep.equal(['queued', 'complete']);
    for (const at of [HOSPITAL, INSURER]) {
      for (const type of ['eligibility.requested', 'eligibility.received', 'eligibility.responded'] as const)
        expect(JSON.stringify(await net.agents[at]!.ledger.byType(type))).not.to.include(PATIENT);
    }

    const again = await respond(sent.id, { outcome: 'error' });
    expect(again.status).to.equal(409);
    expect(await code(again)).to.equal('ERR_CLAIM_STATE');
    expect((await view(sent.id, INSURER)).status).to.equal('complete');
  });

  it('answered at once: one final signed response, and a repeated request identifier returns the first request', async function () {
    const body = { insurer: INSURER, patientId: PATIENT, request: requestFor('EL-2'), coverage: coverage() };
    const res = await ask(body);
    expect(res.status).to.equal(202);
    const sent = (await res.json()) as View;
    const repeat = await ask(body);
    expect(repeat.status).to.equal(200);
    expect(((await repeat.json()) as View).id).to.equal(sent.id);
    await waitFor(async () => (await list(INSURER, 'incoming')).find((r) => r.id === sent.id), 30_000, 'request at the insurer');
    expect((await respond(sent.id, { outcome: 'complete', inforce: false })).status).to.equal(200);
    const final = await statusAt(sent.id, HOSPITAL, 'complete');
    expect(final.responses).to.have.length(1);
    const verified = await verifyEligibilityResponse((final.responses as string[])[0]!, INSURER, await auditorLookup());
    expect((verified.response['insurance'] as Array<{ inforce: boolean }>)[0]!.inforce).to.equal(false);
    expect((await list(INSURER, 'incoming')).filter((r) => r.id === sent.id)).to.have.length(1);
  });

  it('refuses a request without a payment consent covering it (403), and sends and logs nothing', async function () {
    const before = (await list(HOSPITAL, 'outgoing')).length;
    const treatOnly = await grant('SYN-000002', INSURER, ['TREAT'], ['CoverageEligibilityRequest', 'Coverage']);
    const wrongPurpose = await ask({ insurer: INSURER, patientId: 'SYN-000002', consentId: treatOnly, request: requestFor('NC-1'), coverage: coverage() });
    expect(wrongPurpose.status).to.equal(403);
    expect(await code(wrongPurpose)).to.equal('ERR_CONSENT_SCOPE');
    const claimsOnly = await grantPaymentConsent(net, HOSPITAL, INSURER, 'SYN-000004');
    const wrongScope = await ask({ insurer: INSURER, patientId: 'SYN-000004', consentId: claimsOnly, request: requestFor('NC-2'), coverage: coverage() });
    expect(wrongScope.status).to.equal(403);
    const none = await ask({ insurer: INSURER, patientId: 'SYN-000003', request: requestFor('NC-3'), coverage: coverage() });
    expect(none.status).to.equal(403);
    expect(await code(none)).to.equal('ERR_CONSENT_MISSING');
    expect(await list(HOSPITAL, 'outgoing')).to.have.length(before);
    const logged = await net.agents[HOSPITAL]!.ledger.byType('eligibility.requested', HOSPITAL);
    expect(logged).to.have.length(before);
  });

  it('refuses a request to a member that is not an insurer (422) and an invalid request with an OperationOutcome', async function () {
    await grant(PATIENT, OTHER, ['HPAYMT'], ['CoverageEligibilityRequest', 'Coverage']);
    const toHospital = await ask({ insurer: OTHER, patientId: PATIENT, request: requestFor('NI-1'), coverage: coverage() });
    expect(toHospital.status).to.equal(422);
    expect(await code(toHospital)).to.equal('ERR_MEMBER_NOT_INSURER');
    const invalid = await ask({ insurer: INSURER, patientId: PATIENT, request: { ...requestFor('NI-2'), status: 'finished' }, coverage: coverage() });
    expect(invalid.status).to.equal(422);
    expect(((await invalid.json()) as { resourceType: string }).resourceType).to.equal('OperationOutcome');
    expect((await respond('00000000-0000-4000-8000-000000000000', { outcome: 'complete' })).status).to.equal(404);
  });

  it('runs claim eligibility request, list, respond and status from the command line', async function () {
    const api = (id: string): string[] => ['--api', `http://127.0.0.1:${net.agents[id]!.apiPort}`];
    writeFileSync(join(tmp.dir, 'eligibility.json'), JSON.stringify(requestFor('CLI-1')));
    writeFileSync(join(tmp.dir, 'coverage.json'), JSON.stringify(coverage()));
    const files = ['--request', join(tmp.dir, 'eligibility.json'), '--coverage', join(tmp.dir, 'coverage.json')];
    const sent = await cli(['claim', 'eligibility', 'request', ...api(HOSPITAL), '--insurer', INSURER, ...files, '--json'], { HIE_PATIENT_ID: PATIENT });
    expect(sent.code, sent.stderr).to.equal(0);
    const id = (JSON.parse(sent.stdout) as View).id;
    await waitFor(async () => (await list(INSURER, 'incoming')).find((r) => r.id === id), 30_000, 'request at the insurer');
    const listed = await cli(['claim', 'eligibility', 'list', ...api(INSURER), '--direction', 'incoming']);
    expect(listed.stdout).to.include(`${id}  from ${HOSPITAL}  sent`);
    const answered = await cli(['claim', 'eligibility', 'respond', id, ...api(INSURER), '--outcome', 'complete', '--inforce', 'true']);
    expect(answered.code, answered.stderr).to.equal(0);
    const twice = await cli(['claim', 'eligibility', 'respond', id, ...api(INSURER), '--outcome', 'error']);
    expect(twice.code).to.not.equal(0);
    expect(twice.stderr).to.include('ERR_CLAIM_STATE');
    await statusAt(id, HOSPITAL, 'complete');
    const status = await cli(['claim', 'eligibility', 'status', id, ...api(HOSPITAL)]);
    expect(status.stdout).to.include(`${id}  to ${INSURER}  complete`);
    expect(status.stdout).to.include('1 signed response(s)');
    const bad = await cli(['claim', 'eligibility', 'frobnicate', ...api(HOSPITAL)]);
    expect(bad.code).to.not.equal(0);
  });
});
