import { readFileSync } from 'node:fs';
import { connect, type TLSSocket } from 'node:tls';
import { expect } from 'chai';
import { pino } from 'pino';
import { startRelay, type RunningRelay } from '../../relay/index.ts';
import { makeFederation, type TestFederation } from '../support/federation.ts';
import { tempDir } from '../support/tmp.ts';

// The relay issues no TLS session tickets (they cost native memory on every idle agent connection; see
// docs/performance.md, "Relay memory at scale"): a client offering the session of its last connection gets a
// full handshake, and the agent is still admitted.
describe('agent listener: no TLS session tickets (per-connection memory), full handshakes on reconnect', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  let fed: TestFederation;
  let relay: RunningRelay;

  before(async function () {
    tmp = tempDir();
    fed = makeFederation(tmp.dir, ['alpha']);
    relay = await startRelay(
      {
        listen: { host: '127.0.0.1', port: 0 },
        tls: { cert: fed.relay.cert, key: fed.relay.key, ca: fed.caPath, crl: fed.crlPath },
        admin: { host: '127.0.0.1', port: 0 },
        log: { level: 'silent' },
      },
      { logger: pino({ level: 'silent' }) },
    );
  });
  after(async function () {
    await relay?.close(0);
    tmp?.cleanup();
  });

  /** One mTLS connection as agent alpha (offering `session` when given); resolves once a session is known or after 300 ms. */
  async function handshake(session?: Buffer): Promise<{ reused: boolean; session: Buffer | undefined; authorized: boolean; protocol: string | null }> {
    const a = fed.agents.alpha as { cert: string; key: string; ca: string };
    const socket: TLSSocket = connect({
      host: '127.0.0.1',
      port: relay.port,
      servername: 'localhost',
      cert: readFileSync(a.cert),
      key: readFileSync(a.key),
      ca: readFileSync(a.ca),
      ...(session ? { session } : {}),
    });
    let got: Buffer | undefined;
    socket.on('session', (s: Buffer) => (got = s));
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
    });
    // TLS 1.3 sends any ticket after the handshake: give it time to arrive.
    socket.write('GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    await new Promise((res) => setTimeout(res, 300));
    const out = { reused: socket.isSessionReused(), session: got, authorized: socket.authorized, protocol: socket.getProtocol() };
    socket.destroy();
    return out;
  }

  it('does not resume a session on reconnect (no stateless tickets)', async function () {
    const first = await handshake();
    expect(first.authorized).to.equal(true);
    expect(first.reused).to.equal(false);
    if (first.session) {
      const second = await handshake(first.session);
      expect(second.authorized).to.equal(true);
      expect(second.reused, `resumed a ${String(second.protocol)} session`).to.equal(false);
    }
  });
});
