import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { z } from 'zod';
import { ConfigError, configEnvVar, configLeaves, createConfigLoader, readConfigFile, type ConfigLoader } from '../../common/index.ts';
import { agentConfigSchema, parseAgentConfig } from '../../hospital-agent/config.ts';
import { envVarFor, loadRelayConfig, parseRelayConfig, relayConfigLeaves, relayConfigSchema } from '../../relay/index.ts';
import { tempDir } from '../support/tmp.ts';

/** The error `fn` throws; fails the test when it is not a ConfigError. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

const at = (o: unknown, key: string): unknown =>
  key.split('.').reduce<unknown>((n, k) => (n && typeof n === 'object' ? (n as Record<string, unknown>)[k] : undefined), o);

function without(o: Record<string, unknown>, key: string): Record<string, unknown> {
  const copy = structuredClone(o);
  const path = key.split('.');
  const parent = at(copy, path.slice(0, -1).join('.')) ?? copy;
  delete (parent as Record<string, unknown>)[path[path.length - 1] as string];
  return copy;
}

const envText = (v: unknown): string => (Array.isArray(v) ? v.join(',') : String(v));

/**
 * For every leaf set in `sample`: the same config with that leaf taken out of
 * the object and given by its env var instead parses to the same result.
 * Returns the keys so checked.
 */
function checkEveryLeafFromEnv(
  parse: (input: unknown, env: NodeJS.ProcessEnv) => unknown,
  envVar: (k: string) => string,
  leaves: Iterable<string>,
  sample: Record<string, unknown>,
): string[] {
  const expected = parse(sample, {});
  const done: string[] = [];
  for (const key of leaves) {
    const value = at(sample, key);
    if (value === undefined) continue;
    const got = parse(without(sample, key), { [envVar(key)]: envText(value) });
    expect(got, `${key} from ${envVar(key)}`).to.deep.equal(expected);
    done.push(key);
  }
  return done;
}

/** Every leaf whose schema has a default, with that default. */
function defaultsOf(schema: z.ZodObject, prefix = ''): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [key, leaf] of Object.entries(schema.shape) as Array<[string, z.ZodType]>) {
    const path = prefix ? `${prefix}.${key}` : key;
    let inner = leaf;
    for (
      let d = (inner as unknown as { def: { type: string; innerType?: z.ZodType } }).def;
      ['default', 'prefault', 'optional'].includes(d.type) && d.innerType;
    ) {
      inner = d.innerType;
      d = (inner as unknown as { def: { type: string; innerType?: z.ZodType } }).def;
    }
    if ((inner as unknown as { def: { type: string } }).def.type === 'object') {
      for (const [k, v] of defaultsOf(inner as z.ZodObject, path)) out.set(k, v);
      continue;
    }
    const r = leaf.safeParse(undefined);
    if (r.success && r.data !== undefined) out.set(path, r.data);
  }
  return out;
}

const relayTls = { cert: 'r.crt', key: 'r.key', ca: 'ca.crt' };
/** A relay config that sets every leaf but nats.tokenEnv, each to a value other than its default. */
const relayFull = {
  listen: { host: '10.0.0.1', port: 9443 },
  tls: { ...relayTls, crl: 'crl.pem', passphraseEnv: 'KEY_PASS', crlPollMs: 500 },
  directory: { file: 'directory.jws', pollMs: 500 },
  admin: { enabled: false, host: '10.0.0.2', port: 9091 },
  certificates: { enabled: true, issuersFile: 'issuers.jws', host: '10.0.0.3', port: 8445 },
  limits: {
    maxFrame: 65536,
    maxHeader: 4096,
    maxMessage: 32768,
    maxOpenTransfers: 8,
    maxTransfersPerSender: 4,
    transferIdleMs: 5000,
    maxConnections: 100,
    maxConnectionsPerAddress: 5,
    handshakeTimeoutMs: 2500,
    highWaterMark: 131072,
    tlsWritePiece: 32768,
    writeTimeoutMs: 5000,
    pingIntervalMs: 0,
    shutdownGraceMs: 1000,
  },
  tariff: { currency: 'CHF', perTransfer: 3, perGiB: 7, releaseFee: 11 },
  log: { level: 'debug' },
  node: { id: 'node-1' },
  nats: {
    servers: ['nats://a:4222', 'tls://b:4222'],
    userEnv: 'NATS_U',
    passwordEnv: 'NATS_P',
    tls: { ca: 'nats-ca.pem', cert: 'nats.crt', key: 'nats.key' },
    subjectPrefix: 'hie.test',
    requestTimeoutMs: 500,
    window: 1048576,
    nodeCheckMs: 1000,
  },
};
const relayWithToken = { tls: relayTls, nats: { servers: ['nats://a:4222'], tokenEnv: 'NATS_T' } };

/** An agent config that sets every leaf, each to a value other than its default. */
const agentFull = {
  id: 'myongji',
  identity: { cert: 'c.pem', key: 'k.pem', ca: 'ca.pem', crl: 'crl.pem', passphraseEnv: 'KEY_PASS' },
  relay: { urls: ['wss://a:1', 'wss://b:2'] },
  peers: ['severance', 'mgh'],
  dataDir: 'data',
  api: { host: '10.0.0.3', port: 8481, tokensEnv: 'TOKENS', tokensFile: 'tokens.txt' },
  patientSecret: { env: 'SECRET', file: 'secret.hex' },
  patients: {
    identifierSystem: 'urn:oid:1.2.410.200001.1',
    dicomIssuer: 'MYONGJI',
    app: { enabled: true, url: 'https://relay.example/patient/', codeSeconds: 600 },
  },
  consent: { requirePatientSigned: true },
  inbox: { directory: 'out', webhook: { url: 'https://ehr.example/hie', tokenEnv: 'HOOK_TOKEN' } },
  limits: {
    maxExchangeBytes: 1024,
    maxConcurrentSends: 2,
    sendWhileUploading: false,
    inlineBodyBytes: 0,
    maxBatchExchanges: 1,
    fhirValidationThreads: 2,
    maxConsentDecisions: 500,
  },
  recovery: { timeoutMs: 5000, minPeers: 2 },
  replication: { mode: 'full' },
  ledger: { witness: { policy: { quorum: 2, witnesses: ['severance', 'mgh'] } } },
  log: { level: 'warn' },
  console: { enabled: false, sessionIdleMinutes: 30 },
  certificates: { iss: 'https://relay.example.org:8444/issuers/myongji' },
};

describe('common config loader', function () {
  describe('env overrides derived from the schema', function () {
    it('gives every relay leaf an env var, nats.tls.* included, and each one sets its key', function () {
      expect(envVarFor('nats.tls.ca')).to.equal('HIE_RELAY_NATS_TLS_CA');
      expect(envVarFor('nats.tls.cert')).to.equal('HIE_RELAY_NATS_TLS_CERT');
      expect(envVarFor('nats.tls.key')).to.equal('HIE_RELAY_NATS_TLS_KEY');
      expect(envVarFor('listen.port')).to.equal('HIE_RELAY_LISTEN_PORT');
      expect(envVarFor('tls.passphraseEnv')).to.equal('HIE_RELAY_TLS_PASSPHRASE_ENV');
      expect([...relayConfigLeaves.keys()]).to.include.members(['nats.tls.ca', 'nats.tls.cert', 'nats.tls.key', 'nats.servers']);
      const done = [
        ...checkEveryLeafFromEnv(parseRelayConfig, envVarFor, relayConfigLeaves.keys(), relayFull),
        ...checkEveryLeafFromEnv(parseRelayConfig, envVarFor, relayConfigLeaves.keys(), relayWithToken),
      ];
      expect(new Set(done)).to.deep.equal(new Set(relayConfigLeaves.keys()));
    });

    it('gives every agent leaf an env var and each one sets its key', function () {
      const leaves = configLeaves(agentConfigSchema);
      const envVar = (k: string): string => configEnvVar('HIE_AGENT_', k);
      expect(envVar('dataDir')).to.equal('HIE_AGENT_DATA_DIR');
      expect(envVar('inbox.webhook.tokenEnv')).to.equal('HIE_AGENT_INBOX_WEBHOOK_TOKEN_ENV');
      const done = checkEveryLeafFromEnv(parseAgentConfig, envVar, leaves.keys(), agentFull);
      expect(new Set(done)).to.deep.equal(new Set(leaves.keys()));
    });

    it('takes nats.tls.* from the environment over the file, resolved against the file', function () {
      const tmp = tempDir();
      try {
        const file = join(tmp.dir, 'relay.yaml');
        writeFileSync(file, `tls: { cert: r.crt, key: r.key, ca: ca.crt }\nnats: { servers: ['tls://n:4222'], tls: { ca: file-ca.pem } }\n`);
        const c = loadRelayConfig(file, { HIE_RELAY_NATS_TLS_CA: 'env/ca.pem', HIE_RELAY_NATS_TLS_CERT: '/abs/c.pem', HIE_RELAY_NATS_TLS_KEY: 'k.pem' });
        expect(c.nats?.tls).to.deep.equal({ ca: join(tmp.dir, 'env/ca.pem'), cert: '/abs/c.pem', key: join(tmp.dir, 'k.pem') });
        const e = configError(() => loadRelayConfig(file, { HIE_RELAY_NATS_TLS_CERT: 'c.pem' }));
        expect(e.message).to.contain('config key nats.tls.key: cert and key go together');
      } finally {
        tmp.cleanup();
      }
    });

    it('coerces by the leaf type and leaves text it cannot coerce for the schema to name', function () {
      const loader = createConfigLoader({
        schema: z.strictObject({
          a: z
            .strictObject({ n: z.number().int().default(1), b: z.boolean().default(false), s: z.string().default('x'), e: z.enum(['p', 'q']).optional() })
            .prefault({}),
          list: z.array(z.string()).default([]),
        }),
        envPrefix: 'T_',
        code: 'ERR_CONFIG',
      });
      expect([...loader.leaves]).to.deep.equal([
        ['a.n', 'number'],
        ['a.b', 'boolean'],
        ['a.s', 'string'],
        ['a.e', 'string'],
        ['list', 'list'],
      ]);
      expect(loader.parse({}, { T_A_N: '-42', T_A_B: 'true', T_A_S: '007', T_A_E: 'q', T_LIST: 'x, y,,z' })).to.deep.equal({
        a: { n: -42, b: true, s: '007', e: 'q' },
        list: ['x', 'y', 'z'],
      });
      const e = configError(() => loader.parse({}, { T_A_N: '1.5', T_A_B: 'yes' }));
      expect(e.code).to.equal('ERR_CONFIG');
      expect(e.keys.sort()).to.deep.equal(['a.b', 'a.n']);
      expect(e.message).to.contain('config key a.n (from T_A_N):').and.to.contain('config key a.b (from T_A_B):');
    });

    it('refuses a schema whose leaves it cannot set from env, or whose env names collide', function () {
      const make = (schema: z.ZodObject, paths?: string[]): ConfigLoader<z.ZodObject> =>
        createConfigLoader({ schema, envPrefix: 'T_', code: 'ERR_CONFIG', ...(paths ? { paths } : {}) });
      expect(() => make(z.object({ m: z.record(z.string(), z.string()) }))).to.throw(TypeError, /config key m: no env coercion/);
      expect(() => make(z.object({ a: z.object({ b: z.string() }), aB: z.string() }))).to.throw(TypeError, /share the env var T_A_B/);
      expect(() => make(z.object({ n: z.number() }), ['n'])).to.throw(TypeError, /n is listed as a path/);
    });
  });

  describe('files', function () {
    it('reads .JSON (any case) as JSON and everything else as YAML', function () {
      const tmp = tempDir();
      try {
        const upper = join(tmp.dir, 'relay.JSON');
        writeFileSync(upper, JSON.stringify({ tls: relayTls, listen: { port: 9444 } }));
        expect(loadRelayConfig(upper, {}).listen.port).to.equal(9444);
        writeFileSync(upper, '{"tls": ');
        const e = configError(() => loadRelayConfig(upper, {}));
        expect(e.message).to.contain('is not valid JSON');
        expect(e.keys).to.deep.equal(['(file)']);
        expect(e.code).to.equal('ERR_RELAY_CONFIG');
        const yml = join(tmp.dir, 'agent.yml');
        writeFileSync(yml, 'id: [oops');
        expect(configError(() => readConfigFile(yml)).message).to.contain('is not valid YAML');
        writeFileSync(yml, '');
        expect(readConfigFile(yml)).to.deep.equal({});
        expect(configError(() => readConfigFile(join(tmp.dir, 'missing.yaml'), 'ERR_AGENT_CONFIG'))).to.include({ code: 'ERR_AGENT_CONFIG' });
      } finally {
        tmp.cleanup();
      }
    });
  });

  describe('errors', function () {
    it('names the bad key, what was wrong, and the code of its part', function () {
      const relay = configError(() => parseRelayConfig({ tls: relayTls, nats: { servers: ['nats://a:1'], tls: { ca: '' } } }));
      expect(relay.code).to.equal('ERR_RELAY_CONFIG');
      expect(relay.keys).to.deep.equal(['nats.tls.ca']);
      expect(relay.message).to.match(/^config key nats\.tls\.ca: Too small/);
      const fromEnv = configError(() => parseRelayConfig({ tls: relayTls }, { HIE_RELAY_NATS_SERVERS: 'nats://a:1', HIE_RELAY_NATS_TLS_CA: '' }));
      expect(fromEnv.message).to.contain('config key nats.tls.ca (from HIE_RELAY_NATS_TLS_CA):');
      const agent = configError(() => parseAgentConfig({ ...agentFull, limits: { maxBatchExchanges: 0, surprise: 1 } }));
      expect(agent.code).to.equal('ERR_AGENT_CONFIG');
      expect(agent.keys.sort()).to.deep.equal(['limits.maxBatchExchanges', 'limits.surprise']);
      expect(agent.message).to.contain('config key limits.surprise: unknown key');
      expect(configError(() => parseAgentConfig([])).keys).to.deep.equal(['(root)']);
      expect(new ConfigError('x', ['k'])).to.include({ code: 'ERR_CONFIG', name: 'ConfigError' });
    });
  });

  describe('defaults', function () {
    it('resolves every default once: the relay config comes back complete', function () {
      const c = parseRelayConfig({ tls: relayTls });
      const defaults = defaultsOf(relayConfigSchema);
      expect(defaults.size).to.be.greaterThan(20);
      // nats is optional: left out, it stays out (single node).
      expect(c.nats).to.equal(undefined);
      for (const [key, value] of defaults) if (!key.startsWith('nats.')) expect(at(c, key), key).to.deep.equal(value);
      // A cluster section given with its one required key gets its defaults too.
      const n = parseRelayConfig({ tls: relayTls, nats: { servers: ['nats://a:1'] } });
      for (const [key, value] of defaults) if (key.startsWith('nats.')) expect(at(n, key), key).to.deep.equal(value);
    });

    it('resolves every default once: the agent config comes back complete', function () {
      const c = parseAgentConfig({ id: 'myongji', identity: { cert: 'c', key: 'k', ca: 'ca' }, relay: { urls: ['wss://a:1'] }, dataDir: 'd' });
      const defaults = defaultsOf(agentConfigSchema);
      expect(defaults.size).to.be.greaterThan(10);
      for (const [key, value] of defaults) expect(at(c, key), key).to.deep.equal(value);
      // Parsing a resolved config again changes nothing (startRelay re-parses what loadRelayConfig returned).
      expect(parseAgentConfig(c)).to.deep.equal(c);
      const r = parseRelayConfig({ tls: relayTls });
      expect(parseRelayConfig(r)).to.deep.equal(r);
    });
  });
});
