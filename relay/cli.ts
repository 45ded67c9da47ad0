import { parseArgs } from 'node:util';
import { loadRelayConfig, envVarFor } from './config.ts';
import { ConfigError } from './errors.ts';
import { startRelay } from './server.ts';

const HELP = `Usage: hie-relay [--config FILE]
       hie-relay check-config --config FILE
       hie-relay --help

Runs the relay: agents connect over mTLS WebSocket (wss://HOST:PORT${'/v1/agent'}),
operators read /healthz, /readyz, /metrics and /v1/agents on the admin listener.

Options:
  --config FILE   YAML or JSON config (see docs/relay.md); every key can
                  also be set by env var, e.g. listen.port -> ${envVarFor('listen.port')}
  --help          this text

Signals: SIGTERM/SIGINT drain and stop; SIGHUP reloads the CRL, the member directory and the certificate files (all also watched).
`;

/** Entry point of `hie-relay`; resolves with the exit code once the relay has stopped. */
export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const command = positionals[0] ?? 'run';
  if (!['run', 'check-config'].includes(command) || positionals.length > 1)
    throw new ConfigError(`unknown command '${positionals.join(' ')}'; see hie-relay --help`, ['(argv)'], 'ERR_RELAY_CONFIG');
  const configPath = values.config ?? process.env.HIE_RELAY_CONFIG;
  if (!configPath) throw new ConfigError('--config FILE is required (or HIE_RELAY_CONFIG)', ['(argv)'], 'ERR_RELAY_CONFIG');
  const config = loadRelayConfig(configPath, process.env);
  if (command === 'check-config') {
    process.stdout.write(
      `config ok: agents on ${config.listen.host}:${config.listen.port}, admin ${config.admin.enabled ? `${config.admin.host}:${config.admin.port}` : 'disabled'}\n`,
    );
    return 0;
  }
  const relay = await startRelay(config);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      process.off('SIGHUP', hup);
      relay.close().then(resolve, resolve);
    };
    const hup = (): void => {
      relay.reloadCrl();
      relay.reloadIdentity();
      void relay.reloadDirectory();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    process.on('SIGHUP', hup);
  });
  return 0;
}
