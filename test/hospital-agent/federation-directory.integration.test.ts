import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DirectoryStore, parseCrl } from '../../certs/index.ts';
import { REVOKED_REASON, REVOKED_RETRY_MS } from '../../hospital-agent/federation/index.ts';
import { grantConsent, startNetwork, TEST_TOKEN, waitFor, type TestNetwork } from '../support/agents.ts';
import { bundleFor } from '../support/fhir.ts';
import { tempDir } from '../support/tmp.ts';

const PATIENT = 'SYN-000071';
const AGENT_BIN = fileURLToPath(new URL('../../bin/hie-agent.js', import.meta.url));
const CLI_BUNDLE = fileURLToPath(new URL('../../scripts/fixtures/patient-bundle.json', import.meta.url));

/** Runs `hie-agent` as a child process (asynchronously: the agents it calls run in this process). */
function runAgentCli(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [AGENT_BIN, ...args], { env: { ...process.env, HIE_AGENT_TOKEN: TEST_TOKEN, HIE_DEBUG: '' } });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += String(d)));
    child.on('close', (code) => resolve({ code, stderr }));
  });
}
const BUNDLE = bundleFor(PATIENT);

/** A metric's value from an agent's or the relay's /metrics text (0 when the series is absent). */
function metric(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  return line ? Number(line.split(' ').pop()) : 0;
}

/** The compact JWS with one byte of its payload changed (the signature kept). */
function tamper(jws: string): string {
  const [h, p, s] = jws.trim().split('.') as [string, string, string];
  const payload = Buffer.from(p, 'base64url').toString('utf8').replace('"active"', '"revoked"');
  return `${h}.${Buffer.from(payload).toString('base64url')}.${s}`;
}

describe('the member directory and the CRL, through the relay', function () {
  this.timeout(180_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;
  let directory: DirectoryStore;
  let signedSeq1: string;

  const agentMetrics = async (id: string): Promise<string> => (await net.api(id, '/metrics')).text();
  const send = (to: string, consent: string): Promise<Response> =>
    net.api('alpha', '/v1/exchanges', {
      method: 'POST',
      headers: { 'content-type': 'application/fhir+json', 'hie-recipient': to, 'hie-patient-id': PATIENT, 'hie-consent-id': consent },
      body: BUNDLE,
    });
  const consentTo = (to: string): Promise<Response> =>
    net.api('alpha', '/v1/consents', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ patientId: PATIENT, grantee: to, purposes: ['TREAT'], scope: ['*'], validUntil: new Date(Date.now() + 86_400_000).toISOString() }),
    });
  const errorCode = async (res: Response): Promise<string> => ((await res.json()) as { error: { code: string } }).error.code;
  const exchangeCount = async (): Promise<number> => ((await (await net.api('alpha', '/v1/exchanges')).json()) as { exchanges: unknown[] }).exchanges.length;

  before(async function () {
    tmp = tempDir();
    const signed = join(tmp.dir, 'pki', 'directory', 'directory.jws');
    // Agents have no CRL file: whatever CRL they hold came through the relay.
    net = await startNetwork(tmp.dir, ['alpha', 'bravo', 'carol', 'delta'], {
      agentCrl: false,
      captureAgentLog: true,
      relay: { tls: { crlPollMs: 100 }, directory: { file: signed, pollMs: 100 } },
    });
    await waitFor(() => Object.values(net.agents).every((a) => a.relay.connected), 30_000, 'agents connected');
  });
  after(async function () {
    await net?.close();
    tmp?.cleanup();
  });

  it('hands every agent the CRL on connect, and one published later only at the operator reaches a running agent', async function () {
    const alpha = net.agents['alpha']!;
    await waitFor(() => alpha.federation.crl, 20_000, 'the CRL from the relay');
    const first = alpha.federation.crl!.crlNumber!;
    net.fed.ca.crl(); // the operator signs a fresh CRL into PKI/crl.pem; nobody copies it anywhere
    const operatorPem = readFileSync(net.fed.crlPath, 'utf8');
    const published = parseCrl(operatorPem, readFileSync(net.fed.caPath, 'utf8')).crlNumber!;
    expect(published).to.be.greaterThan(first);
    await waitFor(() => alpha.federation.crl?.crlNumber === published, 30_000, 'the new CRL at alpha');
    expect(readFileSync(join(net.configs['alpha']!.dataDir, 'federation', 'crl.pem'), 'utf8')).to.equal(operatorPem);
    expect(metric(await agentMetrics('alpha'), 'hie_agent_crl_number')).to.equal(published);
  });

  it('starts without a directory: sends and consents to anyone are accepted as before', async function () {
    expect(net.agents['alpha']!.federation.directory).to.equal(undefined);
    const res = await consentTo('nosuch');
    expect(res.status, await res.clone().text()).to.equal(201);
  });

  it('brings a signed directory, and each update of it, to a running agent', async function () {
    directory = DirectoryStore.init(net.fed.ca);
    for (const id of ['alpha', 'bravo', 'carol', 'delta'])
      directory.add({ id, name: `${id} hospital`, organisation: `${id} org`, role: id === 'carol' ? 'pharmacy' : 'hospital', status: 'active' });
    signedSeq1 = (await directory.sign()).jws;
    const alpha = net.agents['alpha']!;
    await waitFor(() => alpha.federation.directory?.directory.sequence === 1, 30_000, 'directory 1 at alpha');
    expect(alpha.federation.directory!.members.get('carol')?.role).to.equal('pharmacy');

    directory.setStatus('bravo', 'suspended');
    await directory.sign();
    await waitFor(() => alpha.federation.directory?.directory.sequence === 2, 30_000, 'directory 2 at alpha');
    expect(alpha.federation.directory!.members.get('bravo')?.status).to.equal('suspended');
    expect(readFileSync(join(net.configs['alpha']!.dataDir, 'federation', 'directory.jws'), 'utf8').trim()).to.equal(alpha.federation.directory!.jws);
    expect(metric(await agentMetrics('alpha'), 'hie_agent_directory_sequence')).to.equal(2);
    const shown = (await (await net.api('alpha', '/v1/federation')).json()) as {
      certificate: { revoked: boolean };
      crl: { crlNumber: number; expired: boolean };
      directory: { sequence: number; members: Array<{ id: string; status: string }> };
    };
    expect(shown.certificate.revoked).to.equal(false);
    expect(shown.crl).to.deep.include({ crlNumber: alpha.federation.crl!.crlNumber, expired: false });
    expect(shown.directory.sequence).to.equal(2);
    expect(shown.directory.members.find((m) => m.id === 'bravo')?.status).to.equal('suspended');
  });

  it('refuses a tampered directory and a tampered CRL, with a log line and a metric, and keeps the ones in force', async function () {
    const alpha = net.agents['alpha']!;
    const held = alpha.federation.directory!.jws;
    const crl = alpha.federation.crl!;
    const refused = await alpha.federation.offerDirectory(tamper(held), 'test');
    expect(refused).to.deep.include({ adopted: false, reason: 'invalid' });
    // One byte of the CRL's signed part changed: its thisUpdate's last digit.
    const der = Buffer.from(crl.pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
    const at = der.indexOf(Buffer.from('Z', 'latin1')) - 1;
    der[at] = der[at] === 0x30 ? 0x31 : 0x30;
    const pem = `-----BEGIN X509 CRL-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END X509 CRL-----\n`;
    expect(alpha.federation.offerCrl(pem, 'test')).to.deep.include({ adopted: false, reason: 'invalid' });
    expect(alpha.federation.directory!.jws).to.equal(held);
    expect(alpha.federation.crl!.pem).to.equal(crl.pem);
    const m = await agentMetrics('alpha');
    expect(metric(m, 'hie_agent_federation_documents_refused_total', 'type="directory",reason="invalid"')).to.be.at.least(1);
    expect(metric(m, 'hie_agent_federation_documents_refused_total', 'type="crl",reason="invalid"')).to.be.at.least(1);
    const lines = net.agentLog['alpha']!.map((l) => JSON.parse(l) as { msg: string; type?: string; reason?: string });
    expect(lines.some((l) => l.msg === 'member directory refused; the one in force stays' && l.reason === 'invalid')).to.equal(true);
    expect(lines.some((l) => l.msg === 'CRL refused; the one in force stays' && l.reason === 'invalid')).to.equal(true);

    // The relay does not distribute a tampered file either.
    const relayRefusedBefore = metric(
      await (await fetch(`http://127.0.0.1:${net.relay.adminPort}/metrics`)).text(),
      'hie_relay_documents_refused_total',
      'type="directory"',
    );
    writeFileSync(directory.signedPath, tamper(held));
    expect(await net.relay.reloadDirectory()).to.equal(false);
    const relayRefused = metric(
      await (await fetch(`http://127.0.0.1:${net.relay.adminPort}/metrics`)).text(),
      'hie_relay_documents_refused_total',
      'type="directory"',
    );
    expect(relayRefused).to.be.greaterThan(relayRefusedBefore);
    writeFileSync(directory.signedPath, `${held}\n`);
  });

  it('refuses an older directory and an older CRL', async function () {
    const alpha = net.agents['alpha']!;
    expect(await alpha.federation.offerDirectory(signedSeq1, 'test')).to.deep.include({ adopted: false, reason: 'older' });
    expect(alpha.federation.directory!.directory.sequence).to.equal(2);
    const older = readFileSync(join(tmp.dir, 'pki', 'crl.pem'), 'utf8');
    net.fed.ca.crl();
    await waitFor(() => alpha.federation.crl?.pem === readFileSync(net.fed.crlPath, 'utf8'), 30_000, 'the newest CRL at alpha');
    expect(alpha.federation.offerCrl(older, 'test')).to.deep.include({ adopted: false, reason: 'older' });
    const m = await agentMetrics('alpha');
    expect(metric(m, 'hie_agent_federation_documents_refused_total', 'type="directory",reason="older"')).to.be.at.least(1);
    expect(metric(m, 'hie_agent_federation_documents_refused_total', 'type="crl",reason="older"')).to.be.at.least(1);
  });

  it('refuses a consent and a send to an unknown member at once with 422, and queues nothing', async function () {
    const before = await exchangeCount();
    const consent = await consentTo('nosuch');
    expect(consent.status).to.equal(422);
    expect(await errorCode(consent)).to.equal('ERR_MEMBER_UNKNOWN');
    // A consent granted before the directory existed does not let a send through either.
    const old = ((await (await net.api('alpha', '/v1/consents')).json()) as { consents: Array<{ id: string; grantees: string[] }> }).consents.find((c) =>
      c.grantees.includes('nosuch'),
    );
    const sent = await send('nosuch', old!.id);
    expect(sent.status).to.equal(422);
    expect(await errorCode(sent)).to.equal('ERR_MEMBER_UNKNOWN');
    expect(await exchangeCount()).to.equal(before);
    // The CLI's send returns at once with the code, instead of waiting for a receipt that never comes.
    const cli = await runAgentCli([
      'send',
      '--api',
      `http://127.0.0.1:${net.agents['alpha']!.apiPort}`,
      '--to',
      'nosuch',
      '--patient',
      PATIENT,
      '--consent',
      old!.id,
      '--quiet',
      CLI_BUNDLE,
    ]);
    expect(cli.code).to.not.equal(0);
    expect(cli.stderr.trim().split('\n'), cli.stderr).to.have.length(1);
    expect(cli.stderr).to.match(/ERR_MEMBER_UNKNOWN/);
    expect(await exchangeCount()).to.equal(before);
    // A records request to it likewise.
    const asked = await net.api('alpha', '/v1/requests', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ holder: 'nosuch', patientId: PATIENT }),
    });
    expect(asked.status).to.equal(422);
    expect(await errorCode(asked)).to.equal('ERR_MEMBER_UNKNOWN');
  });

  it('refuses a send and a consent to a suspended member', async function () {
    const before = await exchangeCount();
    const consent = await consentTo('bravo');
    expect(consent.status).to.equal(422);
    expect(await errorCode(consent)).to.equal('ERR_MEMBER_SUSPENDED');
    const sent = await send('bravo', '00000000-0000-4000-8000-000000000000');
    expect(sent.status).to.equal(422);
    expect(await errorCode(sent)).to.equal('ERR_MEMBER_SUSPENDED');
    expect(await exchangeCount()).to.equal(before);
  });

  it('fails an exchange queued for a member that the directory then revokes, without more retries', async function () {
    const consent = await grantConsent(net, 'alpha', 'carol', PATIENT);
    await net.agents['carol']!.close();
    const queued = await send('carol', consent);
    expect(queued.status).to.equal(202);
    const id = ((await queued.json()) as { id: string }).id;
    await waitFor(
      async () => ((await (await net.api('alpha', `/v1/exchanges/${id}`)).json()) as { attempts: number }).attempts >= 1,
      30_000,
      'a first attempt',
    );
    directory.setStatus('carol', 'revoked');
    await directory.sign();
    await waitFor(() => net.agents['alpha']!.federation.directory?.members.get('carol')?.status === 'revoked', 30_000, 'directory with carol revoked');
    const failed = await waitFor(
      async () => {
        const x = (await (await net.api('alpha', `/v1/exchanges/${id}`)).json()) as { status: string; attempts: number; failure?: { code: string } };
        return x.status === 'failed' || x.status === 'delivered' ? x : undefined;
      },
      90_000,
      'the queued exchange to end',
    );
    expect(failed.status).to.equal('failed');
    expect(failed.failure?.code).to.equal('ERR_MEMBER_REVOKED');
    const sent = await send('carol', consent);
    expect(sent.status).to.equal(422);
    expect(await errorCode(sent)).to.equal('ERR_MEMBER_REVOKED');
  });

  it('a revoked agent says so in one log line and in /healthz, and stops hammering the relay', async function () {
    const delta = net.agents['delta']!;
    const healthy = await net.api('delta', '/healthz');
    expect(healthy.status).to.equal(200);
    net.fed.ca.revoke({ id: 'delta', now: new Date(Date.now() - 1000) });
    await waitFor(() => delta.standing.revoked, 30_000, 'delta to learn it is revoked');
    await waitFor(() => !delta.relay.connected, 30_000, 'the relay to close delta');
    const health = await net.api('delta', '/healthz');
    expect(health.status).to.equal(503);
    expect(((await health.json()) as { status: string; reason: string }).reason).to.equal(REVOKED_REASON);
    expect(delta.relay.holdOffMs).to.equal(REVOKED_RETRY_MS);
    const said = net.agentLog['delta']!.map((l) => JSON.parse(l) as { level: number; msg: string }).filter((l) => /certificate is revoked/.test(l.msg));
    expect(said).to.have.length(1);
    expect(said[0]!.level).to.equal(50);
    expect(metric(await agentMetrics('delta'), 'hie_agent_certificate_revoked')).to.equal(1);
    // Without the hold-off, reconnects come within a second (250 ms base); with it, none for an hour.
    const refusedAt = async (): Promise<number> => {
      const text = await (await fetch(`http://127.0.0.1:${net.relay.adminPort}/metrics`)).text();
      return text
        .split('\n')
        .filter((l) => l.startsWith('hie_relay_connections_refused_total'))
        .reduce((n, l) => n + Number(l.split(' ').pop()), 0);
    };
    const before = await refusedAt();
    await new Promise((r) => setTimeout(r, 2000));
    expect(await refusedAt()).to.equal(before);
    expect(delta.relay.connected).to.equal(false);
  });

  it('keeps the adopted CRL and directory across a restart', async function () {
    const alpha = net.agents['alpha']!;
    const crl = alpha.federation.crl!.pem;
    const seq = alpha.federation.directory!.directory.sequence;
    await alpha.close();
    const mark = net.agentLog['alpha']!.length;
    const again = await net.startAgent('alpha');
    expect(again.federation.crl?.pem).to.equal(crl);
    expect(again.federation.directory?.directory.sequence).to.equal(seq);
    // Taken from its own data directory at start-up, before the relay could bring anything.
    const adopted = net.agentLog['alpha']!.slice(mark).map((l) => JSON.parse(l) as { msg: string; source?: string });
    expect(adopted.find((l) => l.msg === 'CRL adopted')?.source).to.equal('data directory');
    expect(adopted.find((l) => l.msg === 'member directory adopted')?.source).to.equal('data directory');
  });
});

describe('an agent whose CRL has expired', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;

  before(async function () {
    tmp = tempDir();
    net = await startNetwork(tmp.dir, ['echo'], { agentStart: false, agentCrl: false, captureAgentLog: true, relay: { tls: { crlPollMs: 100 } } });
  });
  after(async function () {
    await net?.close();
    tmp?.cleanup();
  });

  it('still reaches the relay, which brings it a fresh CRL', async function () {
    // A CRL signed 40 days ago for 30 days: expired ten days ago.
    net.fed.ca.crl({ days: 30, now: new Date(Date.now() - 40 * 86_400_000), out: join(tmp.dir, 'expired.crl.pem') });
    net.fed.ca.crl();
    net.relay.reloadCrl(); // the relay holds the fresh one now (it also polls the file)
    const fresh = parseCrl(readFileSync(net.fed.crlPath, 'utf8'), readFileSync(net.fed.caPath, 'utf8')).crlNumber!;
    net.configs['echo']!.identity.crl = join(tmp.dir, 'expired.crl.pem');
    const echo = await net.startAgent('echo');
    await waitFor(() => echo.federation.crl?.crlNumber === fresh, 30_000, 'the fresh CRL from the relay');
    expect(echo.relay.connected).to.equal(true);
    expect(echo.federation.crlExpired()).to.equal(false);
    const adopted = net.agentLog['echo']!.map((l) => JSON.parse(l) as { msg: string; source?: string }).filter((l) => l.msg === 'CRL adopted');
    expect(adopted.map((l) => l.source)).to.deep.equal(['identity.crl', 'relay']);
  });
});
