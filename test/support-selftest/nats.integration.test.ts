import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { connect, StringCodec } from 'nats';
import { makeFederation } from '../support/federation.ts';
import { startNats, type NatsServer } from '../support/nats.ts';
import { tempDir } from '../support/tmp.ts';

describe('nats-server test harness', function () {
  let tmp: ReturnType<typeof tempDir>;
  let nats: NatsServer;
  let ca: string;

  before(async function () {
    tmp = tempDir();
    const fed = makeFederation(tmp.dir, []);
    ca = readFileSync(fed.caPath, 'utf8');
    nats = await startNats({
      dir: tmp.dir,
      tls: { cert: fed.relay.cert, key: fed.relay.key, ca: fed.caPath },
      users: [{ user: 'relay-1', password: 'secret-1' }],
    });
  });
  after(async function () {
    await nats?.stop();
    tmp.cleanup();
  });

  it('runs a real nats-server with TLS and users that relays a message', async function () {
    const nc = await connect({ servers: nats.url, user: 'relay-1', pass: 'secret-1', tls: { ca } });
    const sc = StringCodec();
    const sub = nc.subscribe('hie.test', { max: 1 });
    nc.publish('hie.test', sc.encode('ping'));
    for await (const m of sub) expect(sc.decode(m.data)).to.equal('ping');
    await nc.close();
  });

  it('refuses a wrong password', async function () {
    try {
      const nc = await connect({ servers: nats.url, user: 'relay-1', pass: 'wrong', tls: { ca }, reconnect: false });
      await nc.close();
      throw new Error('connected with a wrong password');
    } catch (err) {
      expect(String((err as Error).message)).to.match(/AUTHORIZATION|Authorization/i);
    }
  });
});
