import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import express from 'express';
import { loadIdentity } from '../../../certs/index.ts';
import { decodeCard, issuerUrl, jwkThumbprint, jwsFromQr, readQrPng } from '../../../certs/shc/index.ts';
import { main as agentCli } from '../../../hospital-agent/cli.ts';
import { certificateRoutes } from '../../../hospital-agent/api/routes/certificates.ts';
import { createApiApp, type ApiLogger } from '../../../hospital-agent/api/http.ts';
import { CertificateIssuer, loadIssuerKey } from '../../../hospital-agent/certificates/index.ts';
import { parseTokens } from '../../../hospital-agent/config.ts';
import type { Ledger } from '../../../ledger/index.ts';
import { dbPath, makeWorld } from '../../ledger/support.ts';
import { tempDir } from '../../support/tmp.ts';

const EHR = 'e'.repeat(40);
const silent: ApiLogger = { info: () => undefined, warn: () => undefined, error: () => undefined };
const bundle = {
  resourceType: 'Bundle',
  type: 'collection',
  entry: [
    { fullUrl: 'urn:uuid:p1', resource: { resourceType: 'Patient', id: 'p1', name: [{ family: 'Han', given: ['Bo'] }], birthDate: '1970-07-07' } },
    {
      fullUrl: 'urn:uuid:i1',
      resource: {
        resourceType: 'Immunization',
        status: 'completed',
        vaccineCode: { coding: [{ system: 'http://hl7.org/fhir/sid/cvx', code: '208' }] },
        patient: { reference: 'urn:uuid:p1' },
        occurrenceDateTime: '2026-10-01',
      },
    },
  ],
};

describe('POST /v1/certificates (hospital-agent/api/routes/certificates.ts)', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let ledger: Ledger;
  const servers: Server[] = [];

  async function serve(issuer: CertificateIssuer | undefined): Promise<string> {
    const v1 = express.Router();
    v1.use(certificateRoutes(() => issuer));
    const app = createApiApp({ tokens: parseTokens(`ehr@ehr:${EHR}`, 'test'), logger: silent, v1, openapi: {} });
    const server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    servers.push(server);
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }
  const post = (base: string, body: unknown) =>
    fetch(`${base}/v1/certificates`, {
      method: 'POST',
      headers: { authorization: `Bearer ${EHR}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  before(async function () {
    tmp = tempDir();
    const world = await makeWorld(tmp.dir, ['alpha']);
    ledger = await world.open('alpha', dbPath(tmp.dir, 'alpha'));
  });
  after(async () => {
    for (const s of servers) s.close();
    await ledger.close();
    tmp.cleanup();
  });

  it('issues a vaccination card (201): the JWS, its kid thumbprint, its shc:/ QR text and its ledger entry', async function () {
    const world = await makeWorld(tmp.dir, ['alpha']);
    const key = await loadIssuerKey(join(tmp.dir, 'keys'), loadIdentity(world.fed.agents['alpha'] as never));
    const base = await serve(new CertificateIssuer({ ledger, key, iss: issuerUrl('https://relay.example.org', 'alpha') }));
    const r = await post(base, { purpose: 'vaccination', bundle });
    expect(r.status).to.equal(201);
    const card = (await r.json()) as { jws: string; kid: string; qr: string[]; ledger: { seq: number }; statements: string[] };
    const decoded = decodeCard(card.jws);
    expect(decoded.header.kid).to.equal(await jwkThumbprint(key.jwk));
    expect(card.qr[0]).to.match(/^shc:\/\d+$/);
    expect(card.statements).to.include('vaccination http://hl7.org/fhir/sid/cvx|208 on 2026-10-01');
    expect((await ledger.get('alpha', card.ledger.seq))?.entry.type).to.equal('certificate.issued');
  });

  it('answers 422 ERR_CERTIFICATE_BUNDLE for a bundle the purpose cannot use, 400 for a bad request, and logs nothing in the ledger', async function () {
    const world = await makeWorld(tmp.dir, ['alpha']);
    const key = await loadIssuerKey(join(tmp.dir, 'keys'), loadIdentity(world.fed.agents['alpha'] as never));
    const base = await serve(new CertificateIssuer({ ledger, key, iss: issuerUrl('https://relay.example.org', 'alpha') }));
    const before = (await ledger.status()) as unknown;
    const noPeriod = await post(base, { purpose: 'sick-leave', bundle });
    expect(noPeriod.status).to.equal(422);
    expect(((await noPeriod.json()) as { error: { code: string } }).error.code).to.equal('ERR_CERTIFICATE_BUNDLE');
    const bad = await post(base, { purpose: 'gossip', bundle });
    expect(bad.status).to.equal(400);
    expect(JSON.stringify(await ledger.status())).to.equal(JSON.stringify(before));
  });

  it('hie-agent certificate issue writes the card files; the PNG it wrote scans back to the card', async function () {
    const world = await makeWorld(tmp.dir, ['alpha']);
    const key = await loadIssuerKey(join(tmp.dir, 'keys'), loadIdentity(world.fed.agents['alpha'] as never));
    const base = await serve(new CertificateIssuer({ ledger, key, iss: issuerUrl('https://relay.example.org', 'alpha') }));
    const file = join(tmp.dir, 'bundle.json');
    writeFileSync(file, JSON.stringify(bundle));
    const out = join(tmp.dir, 'cli-card');
    let text = '';
    const saved = process.env['HIE_AGENT_TOKEN'];
    process.env['HIE_AGENT_TOKEN'] = EHR;
    try {
      const code = await agentCli(
        ['certificate', 'issue', '--api', base, '--purpose', 'sick-leave', '--bundle', file, '--start', '2026-12-01', '--end', '2026-12-05', '--out', out],
        {
          out: (t) => (text += t),
          err: (t) => (text += t),
        },
      );
      expect(code, text).to.equal(0);
    } finally {
      if (saved === undefined) delete process.env['HIE_AGENT_TOKEN'];
      else process.env['HIE_AGENT_TOKEN'] = saved;
    }
    expect(text).to.contain('unfit for work from 2026-12-01 to 2026-12-05');
    const jws = (JSON.parse(readFileSync(join(out, 'card.smart-health-card'), 'utf8')) as { verifiableCredential: string[] }).verifiableCredential[0];
    expect(jwsFromQr([readQrPng(readFileSync(join(out, 'card.png')))])).to.equal(jws);
  });

  it('answers 409 ERR_CERTIFICATES_DISABLED when certificates.iss is not set', async function () {
    const r = await post(await serve(undefined), { purpose: 'vaccination', bundle });
    expect(r.status).to.equal(409);
    expect(((await r.json()) as { error: { code: string } }).error.code).to.equal('ERR_CERTIFICATES_DISABLED');
  });
});
