import { readFileSync } from 'node:fs';
import { extname, resolve, dirname } from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';
import { DEFAULT_MAX_FRAME, DEFAULT_MAX_HEADER, DEFAULT_MAX_MESSAGE, DEFAULT_MAX_OPEN_TRANSFERS } from './protocol/constants.ts';
import { ConfigError } from './errors.ts';

/** Default agent (WebSocket) port. */
export const DEFAULT_LISTEN_PORT = 8443;
/** Default admin listener: loopback only, plain HTTP. */
export const DEFAULT_ADMIN_HOST = '127.0.0.1';
/** Default admin port. */
export const DEFAULT_ADMIN_PORT = 9090;
/** Bytes queued towards one agent above which the relay stops reading the sources feeding it. */
export const DEFAULT_HIGH_WATER_MARK = 2 * 1024 * 1024;
/** A destination that makes no write progress for this long has its transfers aborted. */
export const DEFAULT_WRITE_TIMEOUT_MS = 15_000;
/** Open transfers one sender may hold to one recipient (inside the recipient's `maxOpenTransfers`), so no member can take all of a hospital's slots. */
export const DEFAULT_MAX_TRANSFERS_PER_SENDER = 16;
/** A transfer that moves no data for this long is aborted at both ends (`idle-timeout`), so an open-and-wait holds no slot for long. */
export const DEFAULT_TRANSFER_IDLE_MS = 30_000;
/** How long SIGTERM waits for open transfers before closing everything. */
export const DEFAULT_SHUTDOWN_GRACE_MS = 10_000;
/** The relay pings every agent this often; one that has not answered the previous ping is cut off (0 disables). */
export const DEFAULT_PING_INTERVAL_MS = 20_000;
/** Most concurrent agent connections. */
export const DEFAULT_MAX_CONNECTIONS = 10_000;
/** How often the CRL file is polled for changes. */
export const DEFAULT_CRL_POLL_MS = 2_000;
/** How long a presence lookup (request/reply to another node) may take before it counts as `no-route`. */
export const DEFAULT_NATS_REQUEST_TIMEOUT_MS = 2_000;
/** Credit a node forwards per cross-node transfer beyond the data already received (bounds bytes in flight through NATS). */
export const DEFAULT_NATS_WINDOW = 8 * 1024 * 1024;
/** Subject prefix of the relay's NATS subjects. */
export const DEFAULT_NATS_SUBJECT_PREFIX = 'hie.relay';
/** A node silent this long while it holds transfer legs with us is probed; no answer aborts them. */
export const DEFAULT_NATS_NODE_CHECK_MS = 3_000;
/** Env var prefix; `listen.port` is HIE_RELAY_LISTEN_PORT. */
export const ENV_PREFIX = 'HIE_RELAY_';

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.number().int().min(min).max(max);

/** The configuration schema (every key documented in the README). */
export const relayConfigSchema = z.strictObject({
  listen: z.strictObject({ host: z.string().min(1).default('0.0.0.0'), port: int(0, 65535).default(DEFAULT_LISTEN_PORT) }).prefault({}),
  tls: z.strictObject({
    cert: z.string().min(1),
    key: z.string().min(1),
    ca: z.string().min(1),
    crl: z.string().min(1).optional(),
    passphraseEnv: z.string().min(1).optional(),
    crlPollMs: int(50, 3_600_000).default(DEFAULT_CRL_POLL_MS),
  }),
  admin: z
    .strictObject({ enabled: z.boolean().default(true), host: z.string().min(1).default(DEFAULT_ADMIN_HOST), port: int(0, 65535).default(DEFAULT_ADMIN_PORT) })
    .prefault({}),
  limits: z
    .strictObject({
      maxFrame: int(1024 + 6, 16 * 1024 * 1024).default(DEFAULT_MAX_FRAME),
      maxHeader: int(256, 1024 * 1024).default(DEFAULT_MAX_HEADER),
      maxMessage: int(256, 1024 * 1024).default(DEFAULT_MAX_MESSAGE),
      maxOpenTransfers: int(1, 65_536).default(DEFAULT_MAX_OPEN_TRANSFERS),
      maxTransfersPerSender: int(1, 65_536).default(DEFAULT_MAX_TRANSFERS_PER_SENDER),
      transferIdleMs: int(100, 3_600_000).default(DEFAULT_TRANSFER_IDLE_MS),
      maxConnections: int(1).default(DEFAULT_MAX_CONNECTIONS),
      highWaterMark: int(64 * 1024).default(DEFAULT_HIGH_WATER_MARK),
      writeTimeoutMs: int(100).default(DEFAULT_WRITE_TIMEOUT_MS),
      pingIntervalMs: int(0, 3_600_000).default(DEFAULT_PING_INTERVAL_MS),
      shutdownGraceMs: int(0).default(DEFAULT_SHUTDOWN_GRACE_MS),
    })
    .prefault({}),
  tariff: z
    .strictObject({
      currency: z
        .string()
        .regex(/^[A-Z]{3}$/, 'must be an ISO 4217 code like EUR')
        .default('EUR'),
      perTransfer: int(0).default(0),
      perGiB: int(0).default(0),
      /** Fee a requesting hospital pays the hospital that released records to it (0: none). */
      releaseFee: int(0).default(0),
    })
    .prefault({}),
  log: z.strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') }).prefault({}),
  node: z
    .strictObject({
      id: z
        .string()
        .regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1-64 of A-Z a-z 0-9 _ -')
        .optional(),
    })
    .prefault({}),
  nats: z
    .strictObject({
      servers: z
        .array(z.string().regex(/^(nats|tls):\/\/[^\s/]+$/, 'must be nats://host:port or tls://host:port'))
        .min(1)
        .max(32),
      userEnv: z.string().min(1).optional(),
      passwordEnv: z.string().min(1).optional(),
      tokenEnv: z.string().min(1).optional(),
      tls: z.strictObject({ ca: z.string().min(1), cert: z.string().min(1).optional(), key: z.string().min(1).optional() }).optional(),
      subjectPrefix: z
        .string()
        .regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'must be dot-separated tokens of A-Z a-z 0-9 _ -')
        .default(DEFAULT_NATS_SUBJECT_PREFIX),
      requestTimeoutMs: int(50, 60_000).default(DEFAULT_NATS_REQUEST_TIMEOUT_MS),
      window: int(64 * 1024, 256 * 1024 * 1024).default(DEFAULT_NATS_WINDOW),
      nodeCheckMs: int(100, 600_000).default(DEFAULT_NATS_NODE_CHECK_MS),
    })
    .refine((n) => (n.userEnv === undefined) === (n.passwordEnv === undefined), { message: 'userEnv and passwordEnv go together', path: ['passwordEnv'] })
    .refine((n) => !(n.tokenEnv && n.userEnv), { message: 'use either tokenEnv or userEnv/passwordEnv, not both', path: ['tokenEnv'] })
    .refine((n) => (n.tls?.cert === undefined) === (n.tls?.key === undefined), { message: 'cert and key go together', path: ['tls', 'key'] })
    .optional(),
});

/** A validated relay configuration. */
export type RelayConfig = z.output<typeof relayConfigSchema>;
/** What a caller may pass: every key with a default may be left out. */
export type RelayConfigInput = z.input<typeof relayConfigSchema>;

type Kind = 'string' | 'number' | 'boolean';
/** Every leaf key and its type, for env overrides. */
const LEAVES: Record<string, Kind> = {
  'listen.host': 'string',
  'listen.port': 'number',
  'tls.cert': 'string',
  'tls.key': 'string',
  'tls.ca': 'string',
  'tls.crl': 'string',
  'tls.passphraseEnv': 'string',
  'tls.crlPollMs': 'number',
  'admin.enabled': 'boolean',
  'admin.host': 'string',
  'admin.port': 'number',
  'limits.maxFrame': 'number',
  'limits.maxHeader': 'number',
  'limits.maxMessage': 'number',
  'limits.maxOpenTransfers': 'number',
  'limits.maxTransfersPerSender': 'number',
  'limits.transferIdleMs': 'number',
  'limits.maxConnections': 'number',
  'limits.highWaterMark': 'number',
  'limits.writeTimeoutMs': 'number',
  'limits.pingIntervalMs': 'number',
  'limits.shutdownGraceMs': 'number',
  'tariff.currency': 'string',
  'tariff.perTransfer': 'number',
  'tariff.perGiB': 'number',
  'tariff.releaseFee': 'number',
  'log.level': 'string',
  'node.id': 'string',
  'nats.userEnv': 'string',
  'nats.passwordEnv': 'string',
  'nats.tokenEnv': 'string',
  'nats.subjectPrefix': 'string',
  'nats.requestTimeoutMs': 'number',
  'nats.window': 'number',
  'nats.nodeCheckMs': 'number',
};

/** List keys set from env as comma-separated values. */
const LIST_LEAVES = new Set(['nats.servers']);

/** The env var that sets a dotted key: `limits.maxFrame` -> HIE_RELAY_LIMITS_MAX_FRAME. */
export function envVarFor(key: string): string {
  return (
    ENV_PREFIX +
    key
      .split('.')
      .map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase())
      .join('_')
  );
}

function coerce(raw: string, kind: Kind): unknown {
  if (kind === 'number') return /^-?\d+$/.test(raw.trim()) ? Number(raw) : raw;
  if (kind === 'boolean') return raw === 'true' ? true : raw === 'false' ? false : raw;
  return raw;
}

/**
 * Validates a config object, with env vars (HIE_RELAY_*) overriding file
 * values. Throws a {@link ConfigError} naming every bad key.
 */
export function parseRelayConfig(input: unknown, env: NodeJS.ProcessEnv = {}): RelayConfig {
  const merged: Record<string, unknown> = input && typeof input === 'object' && !Array.isArray(input) ? structuredClone(input as Record<string, unknown>) : {};
  if (input !== undefined && (typeof input !== 'object' || input === null || Array.isArray(input))) {
    throw new ConfigError('config must be an object of sections (listen, tls, admin, limits, tariff, log, node, nats)', ['(root)']);
  }
  const fromEnv = new Map<string, string>();
  const set = (key: string, value: unknown, name: string): void => {
    const [section, leaf] = key.split('.') as [string, string];
    const s = merged[section];
    const obj = s && typeof s === 'object' && !Array.isArray(s) ? (s as Record<string, unknown>) : {};
    obj[leaf] = value;
    merged[section] = obj;
    fromEnv.set(key, name);
  };
  for (const [key, kind] of Object.entries(LEAVES)) {
    const name = envVarFor(key);
    const raw = env[name];
    if (raw !== undefined) set(key, coerce(raw, kind), name);
  }
  for (const key of LIST_LEAVES) {
    const name = envVarFor(key);
    const raw = env[name];
    if (raw !== undefined)
      set(
        key,
        raw
          .split(',')
          .map((v) => v.trim())
          .filter(Boolean),
        name,
      );
  }
  const result = relayConfigSchema.safeParse(merged);
  if (result.success) return result.data;
  const keys: string[] = [];
  const lines = result.error.issues.map((issue) => {
    const base = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') {
      const names = issue.keys.map((k) => (base ? `${base}.${k}` : k));
      keys.push(...names);
      return `config key ${names.join(', ')}: unknown key`;
    }
    const key = base || '(root)';
    keys.push(key);
    const src = fromEnv.get(key) ?? fromEnv.get(issue.path.slice(0, 2).map(String).join('.'));
    return `config key ${key}${src ? ` (from ${src})` : ''}: ${issue.message}`;
  });
  throw new ConfigError(lines.join('; '), keys);
}

/**
 * Reads a YAML or JSON config file (by extension; YAML otherwise), applies
 * env overrides and validates. Relative TLS paths resolve against the file's
 * directory.
 */
export function loadRelayConfig(path: string, env: NodeJS.ProcessEnv = process.env): RelayConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, ['(file)']);
  }
  let data: unknown;
  try {
    data = extname(path).toLowerCase() === '.json' ? JSON.parse(text) : YAML.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid ${extname(path) === '.json' ? 'JSON' : 'YAML'}: ${(err as Error).message.split('\n')[0]}`, [
      '(file)',
    ]);
  }
  const config = parseRelayConfig(data ?? {}, env);
  const base = dirname(resolve(path));
  const tls = config.tls;
  for (const k of ['cert', 'key', 'ca', 'crl'] as const) {
    const v = tls[k];
    if (v !== undefined) tls[k] = resolve(base, v);
  }
  const natsTls = config.nats?.tls;
  if (natsTls) {
    natsTls.ca = resolve(base, natsTls.ca);
    if (natsTls.cert !== undefined) natsTls.cert = resolve(base, natsTls.cert);
    if (natsTls.key !== undefined) natsTls.key = resolve(base, natsTls.key);
  }
  return config;
}
