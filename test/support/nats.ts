import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A nats-server child process on loopback. */
export interface NatsServer {
  url: string;
  port: number;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** Options of {@link startNats}. */
export interface NatsOptions {
  /** Directory for the generated config file. */
  dir: string;
  /** Serve TLS with these PEM files (clients verify against `ca`). */
  tls?: { cert: string; key: string; ca: string };
  /** Require one of these user/password pairs. */
  users?: Array<{ user: string; password: string }>;
  /** Starts the process (`child_process.spawn` unless given: the benches pass their child registry's). */
  spawn?: (command: string, args: string[], options: SpawnOptions) => ChildProcess;
}

/**
 * Starts Debian's `nats-server` (core NATS only: JetStream stays off, so
 * nothing is persisted) on 127.0.0.1 with a random port, and resolves once
 * it accepts clients.
 */
export async function startNats(options: NatsOptions): Promise<NatsServer> {
  const lines = ['listen: "127.0.0.1:-1"', 'max_payload: 1048576', 'no_sys_acc: true'];
  if (options.tls) {
    lines.push(
      `tls { cert_file: ${JSON.stringify(options.tls.cert)}, key_file: ${JSON.stringify(options.tls.key)}, ca_file: ${JSON.stringify(options.tls.ca)}, timeout: 5 }`,
    );
  }
  if (options.users) {
    const users = options.users.map((u) => `{ user: ${JSON.stringify(u.user)}, password: ${JSON.stringify(u.password)} }`).join(', ');
    lines.push(`authorization { users: [ ${users} ] }`);
  }
  const conf = join(options.dir, `nats-${process.pid}-${Date.now()}.conf`);
  writeFileSync(conf, `${lines.join('\n')}\n`);
  const child = (options.spawn ?? spawn)('nats-server', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  const port = await new Promise<number>((resolve, reject) => {
    let log = '';
    const timer = setTimeout(() => reject(new Error(`nats-server did not start: ${log.slice(-500)}`)), 10_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot start nats-server (apt-get install nats-server): ${err.message}`));
    });
    const onExit = (code: number | null): void => {
      clearTimeout(timer);
      reject(new Error(`nats-server exited with ${code}: ${log.slice(-500)}`));
    };
    child.once('exit', onExit);
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      log += chunk;
      const m = /Listening for client connections on 127\.0\.0\.1:(\d+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        child.off('exit', onExit);
        resolve(Number(m[1]));
      }
    });
  });
  const scheme = options.tls ? 'tls' : 'nats';
  return {
    url: `${scheme}://127.0.0.1:${port}`,
    port,
    process: child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
