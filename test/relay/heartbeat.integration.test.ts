import { once } from 'node:events';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { WebSocket, WebSocketServer } from 'ws';
import { clientTlsOptions, loadIdentity, serverTlsOptions } from '../../certs/index.ts';
import type { RunningRelay } from '../../relay/index.ts';
import { DEFAULT_LIMITS, encodeNotice, RelayClient } from '../../relay/protocol/index.ts';
import { makeFederation, type TestFederation } from '../support/federation.ts';
import { tempDir } from '../support/tmp.ts';
import { admin, connectAgent, startTestRelay, until } from './helpers.ts';

describe('heartbeats', function () {
  this.timeout(30_000);
  let tmp: ReturnType<typeof tempDir>;
  let fed: TestFederation;
  let relay: RunningRelay;

  before(async function () {
    tmp = tempDir();
    fed = makeFederation(tmp.dir, ['alpha', 'bravo', 'silent']);
    relay = await startTestRelay(fed, { limits: { pingIntervalMs: 200 } });
  });
  after(async function () {
    await relay.close(0);
    tmp.cleanup();
  });

  it('the relay cuts off an agent that stops answering pings, and keeps the others', async function () {
    const healthy = await connectAgent(fed, relay, 'alpha', { pingIntervalMs: 200 });
    const files = fed.agents['silent']!;
    // autoPong off: the peer reads frames but never answers a ping, like a stalled or half-dead agent.
    const silent = new WebSocket(`wss://127.0.0.1:${relay.port}/v1/agent`, {
      ...clientTlsOptions(loadIdentity(files)),
      perMessageDeflate: false,
      autoPong: false,
    });
    await once(silent, 'open');
    const closed = once(silent, 'close');
    await until(async () => (await admin(relay, '/v1/agents')).text.includes('"silent"'), 5000, 'silent agent listed');
    await closed;
    await until(async () => !(await admin(relay, '/v1/agents')).text.includes('"silent"'), 5000, 'silent agent gone');
    const metrics = (await admin(relay, '/metrics')).text;
    expect(/hie_relay_heartbeat_timeouts_total (\d+)/.exec(metrics)?.[1]).to.not.equal('0');
    await new Promise((r) => setTimeout(r, 600));
    expect(healthy.connected, 'an agent that answers pings stays connected').to.equal(true);
    await healthy.close();
  });

  it('an agent drops a relay that stops answering its pings', async function () {
    const server = createServer(serverTlsOptions(loadIdentity(fed.relay)));
    const wss = new WebSocketServer({ server, autoPong: false });
    wss.on('connection', (ws) => ws.send(encodeNotice('ready', { agent: 'bravo', limits: DEFAULT_LIMITS }, DEFAULT_LIMITS)));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const client = new RelayClient({
        url: `wss://127.0.0.1:${(server.address() as AddressInfo).port}`,
        servername: 'localhost',
        identity: loadIdentity(fed.agents['bravo']!),
        reconnect: false,
        pingIntervalMs: 200,
      });
      await client.connect();
      const t0 = Date.now();
      const [info] = (await once(client, 'disconnected')) as [{ code: number; reason: string }];
      expect(info.reason).to.contain('heartbeat');
      expect(Date.now() - t0).to.be.lessThan(5000);
      await client.close();
    } finally {
      wss.close();
      server.close();
    }
  });
});
