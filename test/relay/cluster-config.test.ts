import { expect } from 'chai';
import { pino } from 'pino';
import { ConfigError, parseRelayConfig, RelayMetrics } from '../../relay/index.ts';
import { connectNatsRouter } from '../../relay/nats/index.ts';
import { RelayClient } from '../../relay/protocol/index.ts';
import { configError } from './helpers.ts';

const tls = { cert: 'r.crt', key: 'r.key', ca: 'ca.crt' };

describe('relay cluster config (nats.*, node.*)', function () {
  it('leaves nats unset (single node) by default and fills cluster defaults when servers are given', function () {
    expect(parseRelayConfig({ tls }).nats).to.equal(undefined);
    const c = parseRelayConfig({ tls, node: { id: 'n1' }, nats: { servers: ['tls://127.0.0.1:4222'] } });
    expect(c.node.id).to.equal('n1');
    expect(c.nats).to.include({ subjectPrefix: 'hie.relay', requestTimeoutMs: 2000 });
  });

  it('names the key for a bad NATS URL, a bad node id and half a credential pair', function () {
    expect(configError(() => parseRelayConfig({ tls, nats: { servers: ['http://x:1'] } })).keys).to.deep.equal(['nats.servers.0']);
    expect(configError(() => parseRelayConfig({ tls, node: { id: 'a.b' } })).keys).to.deep.equal(['node.id']);
    const e = configError(() => parseRelayConfig({ tls, nats: { servers: ['nats://h:1'], userEnv: 'U' } }));
    expect(e.message).to.match(/config key nats\.passwordEnv: userEnv and passwordEnv go together/);
  });

  it('reads nats.servers from a comma-separated env var and says so in errors', function () {
    const c = parseRelayConfig({ tls }, { HIE_RELAY_NATS_SERVERS: 'nats://a:1, tls://b:2' });
    expect(c.nats?.servers).to.deep.equal(['nats://a:1', 'tls://b:2']);
    const e = configError(() => parseRelayConfig({ tls }, { HIE_RELAY_NATS_SERVERS: 'ftp://a' }));
    expect(e.message).to.contain('from HIE_RELAY_NATS_SERVERS');
  });

  it('refuses to connect when the env var named for the NATS user is unset, naming the key', async function () {
    const config = parseRelayConfig({ tls, nats: { servers: ['nats://127.0.0.1:1'], userEnv: 'NO_SUCH_USER_VAR', passwordEnv: 'NO_SUCH_PW_VAR' } });
    const err = await connectNatsRouter({
      config: config.nats!,
      nodeId: 'n1',
      limits: config.limits,
      metrics: new RelayMetrics(),
      log: pino({ level: 'silent' }),
      env: {},
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(ConfigError);
    expect((err as ConfigError).keys).to.deep.equal(['nats.userEnv']);
    expect((err as ConfigError).message).to.contain('NO_SUCH_USER_VAR is not set');
  });
});

describe('RelayClient relay URLs', function () {
  it('accepts urls, keeps url working, and rejects a non-wss entry', function () {
    const identity = { certPem: 'x', keyPem: 'x', caPem: 'x' } as never;
    expect(() => new RelayClient({ identity } as never)).to.throw(TypeError, /url or urls/);
    expect(() => new RelayClient({ urls: ['wss://a:1', 'https://b:2'], identity })).to.throw(TypeError, /wss:\/\//);
  });
});
