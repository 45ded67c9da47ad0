import { once } from 'node:events';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { expect } from 'chai';
import { installCertificate, loadIdentity, requestRenewal, writeFileAtomic } from '../../certs/index.ts';
import { RelayClient, RENEWAL_CLOSE_REASON } from '../../relay/protocol/index.ts';
import { admin } from '../relay/helpers.ts';
import { grantConsent, startNetwork, waitFor, type TestNetwork } from '../support/agents.ts';
import { bundleFor } from '../support/fhir.ts';
import { tempDir } from '../support/tmp.ts';

/** The serial (lowercase hex) of the certificate a TLS server on `port` presents now. */
async function servedSerial(port: number, caPem: string): Promise<string> {
  const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: caPem, rejectUnauthorized: false });
  await once(socket, 'secureConnect');
  const serial = socket.getPeerCertificate().serialNumber.toLowerCase().replace(/^0+/, '');
  socket.destroy();
  return serial;
}

async function agentsAtRelay(net: TestNetwork): Promise<Array<{ id: string; serial: string }>> {
  return (JSON.parse((await admin(net.relay, '/v1/agents')).text) as { agents: Array<{ id: string; serial: string }> }).agents;
}

function metricValue(text: string, pattern: RegExp): number | undefined {
  const m = pattern.exec(text);
  return m ? Number(m[1]) : undefined;
}

describe('certificate renewal without a restart (relay and agents)', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;
  let agentsDir: string;
  let operator: string;

  before(async function () {
    tmp = tempDir();
    net = await startNetwork(tmp.dir, ['alpha', 'bravo'], { captureRelayLog: true });
    agentsDir = join(tmp.dir, 'agents');
    operator = join(tmp.dir, 'operator');
    mkdirSync(operator);
    await waitFor(async () => (await agentsAtRelay(net)).length === 2, 20_000, 'both agents at the relay');
  });
  after(async function () {
    await net?.close();
    tmp?.cleanup();
  });

  it('moves a running agent to its renewed certificate: the relay sees the new serial, the agent was not restarted', async function () {
    const agent = net.agents['alpha']!;
    const oldSerial = agent.identity().serial;
    expect((await agentsAtRelay(net)).find((a) => a.id === 'alpha')?.serial).to.equal(oldSerial);
    // Hospital: a renewal request for the same key; operator: sign it (10 days, to see /healthz turn degraded); hospital: install.
    const { csrPath } = requestRenewal({ id: 'alpha', dir: agentsDir });
    copyFileSync(csrPath, join(operator, 'alpha.csr.pem'));
    const signed = net.fed.ca.signCsr({
      csrPem: readFileSync(join(operator, 'alpha.csr.pem'), 'utf8'),
      renew: true,
      days: 10,
      out: join(operator, 'alpha.crt.pem'),
    });
    installCertificate({ id: 'alpha', dir: agentsDir, certPem: readFileSync(signed.certPath, 'utf8') });

    await waitFor(async () => (await agentsAtRelay(net)).find((a) => a.id === 'alpha')?.serial === signed.serial, 30_000, 'the relay to see the new serial');
    expect(agent.identity().serial).to.equal(signed.serial);
    expect(net.agents['alpha']).to.equal(agent);
    const m = await (await fetch(`http://127.0.0.1:${agent.apiPort}/metrics`)).text();
    expect(metricValue(m, /^hie_agent_certificate_reloads_total\{outcome="adopted"\} (\d+)/m)).to.equal(1);
    const certExpiry = metricValue(m, /^hie_agent_cert_expiry_seconds (\S+)/m) as number;
    expect(Math.abs(certExpiry - (Date.parse(signed.notAfter) - Date.now()) / 1000)).to.be.below(120);
    expect(metricValue(m, /^hie_agent_ca_expiry_seconds (\S+)/m)).to.be.above(certExpiry);
    expect(metricValue(m, /^hie_agent_crl_age_seconds (\S+)/m)).to.be.at.least(0);
    expect(metricValue(m, /^hie_agent_crl_next_update_seconds (\S+)/m)).to.be.above(0);
    // Ten days left is within the 14-day warning: the agent says so before the certificate lapses.
    const health = (await (await fetch(`http://127.0.0.1:${agent.apiPort}/healthz`)).json()) as { status: string; reasons?: string[] };
    expect(health.status).to.equal('degraded');
    expect(health.reasons?.join(' ')).to.contain(signed.serial);
    const bravo = (await (await fetch(`http://127.0.0.1:${net.agents['bravo']!.apiPort}/healthz`)).json()) as { status: string; reasons?: string[] };
    expect(bravo).to.include({ status: 'ok' });
    expect(bravo.reasons).to.equal(undefined);
    // The key bundle peers get names the new certificate, and exchanges still flow both ways on the renewed connection.
    const bundlePath = join(tmp.dir, 'data', 'alpha', 'keys', 'bundle.json');
    const newCert = readFileSync(join(agentsDir, 'alpha.crt.pem'), 'utf8');
    await waitFor(() => (JSON.parse(readFileSync(bundlePath, 'utf8')) as { cert: string }).cert === newCert, 20_000, 'the re-issued key bundle');
    for (const [from, to, patient] of [
      ['alpha', 'bravo', 'SYN-RENEW-1'],
      ['bravo', 'alpha', 'SYN-RENEW-2'],
    ] as const) {
      const consent = await grantConsent(net, from, to, patient);
      const res = await net.api(from, '/v1/exchanges', {
        method: 'POST',
        headers: { 'content-type': 'application/fhir+json', 'hie-recipient': to, 'hie-patient-id': patient, 'hie-consent-id': consent },
        body: bundleFor(patient),
      });
      expect(res.status, await res.clone().text()).to.equal(202);
      const { id } = (await res.json()) as { id: string };
      const done = await waitFor(
        async () => {
          const r = (await (await net.api(from, `/v1/exchanges/${id}`)).json()) as { status: string };
          return r.status === 'delivered' || r.status === 'failed' ? r : undefined;
        },
        30_000,
        `${from} -> ${to} delivery`,
      );
      expect(done.status, JSON.stringify(done)).to.equal('delivered');
    }
  });

  it('keeps a connection that carries a transfer until it ends, then reconnects with the renewed certificate', async function () {
    const url = `wss://127.0.0.1:${net.relay.port}`;
    const first = loadIdentity(net.fed.addAgent('charlie'));
    const renewed = loadIdentity(net.fed.addAgent('charlie'));
    expect(renewed.serial).to.not.equal(first.serial);
    const sender = new RelayClient({ url, servername: 'localhost', identity: first, reconnect: false });
    const receiver = new RelayClient({ url, servername: 'localhost', identity: loadIdentity(net.fed.addAgent('delta')), reconnect: false });
    const received: Buffer[] = [];
    const delivered = new Promise<void>((resolve) =>
      receiver.on('transfer', (t) => {
        t.on('data', (d: Buffer) => received.push(d));
        t.on('end', () => resolve());
      }),
    );
    await Promise.all([sender.connect(), receiver.connect()]);
    const out = sender.openTransfer('delta');
    out.write(Buffer.alloc(64 * 1024, 1));
    const ready = once(sender, 'ready');
    const left = once(sender, 'disconnected');
    sender.renewIdentity(renewed);
    // While the transfer is open the connection (and its serial) stays.
    await new Promise((r) => setTimeout(r, 300));
    expect(sender.connected).to.equal(true);
    expect((await agentsAtRelay(net)).find((a) => a.id === 'charlie')?.serial).to.equal(first.serial);
    out.end(Buffer.alloc(64 * 1024, 2));
    await delivered;
    expect(Buffer.concat(received).length).to.equal(128 * 1024);
    await ready;
    const [why] = (await left) as [{ code: number; reason: string }];
    expect(why).to.deep.equal({ code: 1000, reason: RENEWAL_CLOSE_REASON });
    expect((await agentsAtRelay(net)).find((a) => a.id === 'charlie')?.serial).to.equal(renewed.serial);
    await Promise.all([sender.close(), receiver.close()]);
  });

  it('moves a running relay to its renewed certificate for new handshakes and logs the serial and notAfter', async function () {
    const caPem = readFileSync(net.fed.caPath, 'utf8');
    const before = await servedSerial(net.relay.port, caPem);
    expect(before).to.equal(net.relay.identity().serial);
    const fresh = net.fed.ca.issueRelay({ hosts: ['localhost', '127.0.0.1', '::1'], outDir: join(tmp.dir, 'relay-next'), days: 200 });
    writeFileAtomic(net.fed.relay.key, readFileSync(fresh.keyPath), 0o600);
    writeFileAtomic(net.fed.relay.cert, readFileSync(fresh.certPath), 0o644);
    await waitFor(() => net.relay.identity().serial === fresh.serial, 30_000, 'the relay to adopt its new certificate');
    expect(await servedSerial(net.relay.port, caPem)).to.equal(fresh.serial);
    const line = net.relayLog.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['msg'] === 'new relay certificate adopted');
    // X.509 keeps whole seconds.
    const notAfter = new Date(Math.floor(Date.parse(fresh.notAfter) / 1000) * 1000).toISOString();
    expect(line).to.include({ serial: fresh.serial, notAfter, previous: before });
    // Agents keep working through it: both are still (or again) at the relay.
    await waitFor(async () => (await agentsAtRelay(net)).some((a) => a.id === 'alpha'), 20_000, 'alpha at the relay');
  });

  it('refuses a renewed certificate that does not match the key and keeps the one in force (relay and agent)', async function () {
    const caPem = readFileSync(net.fed.caPath, 'utf8');
    const relaySerial = net.relay.identity().serial;
    const stray = net.fed.ca.issueRelay({ hosts: ['localhost'], outDir: join(tmp.dir, 'relay-stray'), days: 30 });
    // Only the certificate is replaced: it belongs to another key.
    writeFileAtomic(net.fed.relay.cert, readFileSync(stray.certPath), 0o644);
    await waitFor(
      () => net.relayLog.some((l) => l.includes('renewed certificate files refused') && l.includes('ERR_PKI_CERT_MISMATCH')),
      30_000,
      'the relay to refuse the mismatched pair',
    );
    expect(net.relay.identity().serial).to.equal(relaySerial);
    expect(await servedSerial(net.relay.port, caPem)).to.equal(relaySerial);
    const relayMetrics = (await admin(net.relay, '/metrics')).text;
    expect(metricValue(relayMetrics, /^hie_relay_certificate_reloads_total\{outcome="rejected"\} (\d+)/m)).to.be.at.least(1);

    const agent = net.agents['alpha']!;
    const agentSerial = agent.identity().serial;
    const other = net.fed.ca.issueAgent({ id: 'alpha', outDir: join(tmp.dir, 'alpha-stray'), renew: true });
    writeFileAtomic(join(agentsDir, 'alpha.crt.pem'), readFileSync(other.certPath), 0o644);
    await waitFor(
      async () =>
        metricValue(
          await (await fetch(`http://127.0.0.1:${agent.apiPort}/metrics`)).text(),
          /^hie_agent_certificate_reloads_total\{outcome="rejected"\} (\d+)/m,
        ),
      30_000,
      'the agent to refuse the mismatched pair',
    );
    expect(agent.reloadIdentity()).to.equal(false);
    expect(agent.identity().serial).to.equal(agentSerial);
    expect((await agentsAtRelay(net)).find((a) => a.id === 'alpha')?.serial).to.equal(agentSerial);
  });
});
