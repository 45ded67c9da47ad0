import { join } from 'node:path';
import { expect } from 'chai';
import type { RunningRelay } from '../../relay/index.ts';
import { makeFederation, type TestFederation } from '../support/federation.ts';
import { tempDir } from '../support/tmp.ts';
import { admin, startTestRelay } from './helpers.ts';

describe('relay certificate and CRL health (metrics, /healthz)', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  let fed: TestFederation;
  const relays: RunningRelay[] = [];

  before(() => {
    tmp = tempDir();
    fed = makeFederation(tmp.dir, ['alpha']);
  });
  after(async () => {
    for (const r of relays) await r.close(0);
    tmp.cleanup();
  });

  it('exports certificate, CA and CRL expiry and CRL age, and says ok while all are far from lapsing', async function () {
    const relay = await startTestRelay(fed);
    relays.push(relay);
    const m = (await admin(relay, '/metrics')).text;
    const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(m)?.[1]);
    expect(value('hie_relay_cert_expiry_seconds')).to.be.above(300 * 86_400);
    expect(value('hie_relay_ca_expiry_seconds')).to.be.above(value('hie_relay_cert_expiry_seconds'));
    expect(value('hie_relay_crl_age_seconds')).to.be.at.least(0);
    expect(value('hie_relay_crl_next_update_seconds')).to.be.above(20 * 86_400);
    expect(JSON.parse((await admin(relay, '/healthz')).text)).to.deep.equal({ status: 'ok' });
    // Refusal counters exist before the first refusal, one per reason.
    for (const reason of ['revoked', 'expired', 'not-yet-valid', 'unknown-ca', 'wrong-usage', 'not-agent', 'no-certificate', 'tls-error'])
      expect(m).to.match(new RegExp(`^hie_relay_tls_refused_total\\{reason="${reason}"\\} 0$`, 'm'));
  });

  it('reports degraded, with the reason, for a relay certificate that expires within 14 days', async function () {
    const short = fed.ca.issueRelay({ hosts: ['localhost', '127.0.0.1'], outDir: join(tmp.dir, 'short'), days: 10 });
    const relay = await startTestRelay(fed, { tls: { cert: short.certPath, key: short.keyPath, ca: fed.caPath, crl: fed.crlPath } });
    relays.push(relay);
    const res = await admin(relay, '/healthz');
    expect(res.status).to.equal(200);
    const body = JSON.parse(res.text) as { status: string; reasons: string[] };
    expect(body.status).to.equal('degraded');
    expect(body.reasons.join(' ')).to.contain(`certificate ${short.serial} expires`);
  });
});
