import { z } from 'zod';
import { createConfigLoader } from '../common/index.ts';
import { DEFAULT_MAX_FRAME, DEFAULT_MAX_HEADER, DEFAULT_MAX_MESSAGE, DEFAULT_MAX_OPEN_TRANSFERS } from './protocol/constants.ts';

/** Default agent (WebSocket) port. */
export const DEFAULT_LISTEN_PORT = 8443;
/** Default admin listener: loopback only, plain HTTP. */
export const DEFAULT_ADMIN_HOST = '127.0.0.1';
/** Default admin port. */
export const DEFAULT_ADMIN_PORT = 9090;
/** Bytes queued towards one agent above which the relay stops reading the sources feeding it. */
export const DEFAULT_HIGH_WATER_MARK = 2 * 1024 * 1024;
/** The largest piece of a frame handed to TLS at once: what Node's TLS layer keeps per agent after a burst (relay/frame-writer.ts). */
export const DEFAULT_TLS_WRITE_PIECE = 16 * 1024;
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
/** A connection that has not completed its TLS handshake this long after accept is closed (Node's own default is 120 s). */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
/** Concurrent TCP connections one remote address may hold (handshakes in progress included); more are closed at once. */
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 64;
/** How often the CRL file is polled for changes. */
export const DEFAULT_CRL_POLL_MS = 2_000;
/** How often the signed member directory file (`directory.file`) is polled for changes. */
export const DEFAULT_DIRECTORY_POLL_MS = 2_000;
/** Default certificate listener (public HTTPS: issuer keys, revocation lists, the verifier page): all interfaces. */
export const DEFAULT_CERTIFICATES_HOST = '0.0.0.0';
/** Default certificate listener port. */
export const DEFAULT_CERTIFICATES_PORT = 8444;
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

/** The configuration schema (every key documented in docs/relay.md). */
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
  /** The signed member directory (`hie-certs directory sign` writes PKI/directory/directory.jws); handed to every agent with the CRL. */
  directory: z.strictObject({ file: z.string().min(1).optional(), pollMs: int(50, 3_600_000).default(DEFAULT_DIRECTORY_POLL_MS) }).prefault({}),
  admin: z
    .strictObject({ enabled: z.boolean().default(true), host: z.string().min(1).default(DEFAULT_ADMIN_HOST), port: int(0, 65535).default(DEFAULT_ADMIN_PORT) })
    .prefault({}),
  /** The public certificate listener (docs/certificates.md): HTTPS with the relay certificate, no client certificate; serves `issuersFile`. */
  certificates: z
    .strictObject({
      enabled: z.boolean().default(false),
      issuersFile: z.string().min(1).optional(),
      host: z.string().min(1).default(DEFAULT_CERTIFICATES_HOST),
      port: int(0, 65535).default(DEFAULT_CERTIFICATES_PORT),
    })
    .prefault({})
    .refine((c) => !c.enabled || c.issuersFile !== undefined, {
      message: 'certificates.issuersFile is required when certificates.enabled is true',
      path: ['issuersFile'],
    }),
  limits: z
    .strictObject({
      maxFrame: int(1024 + 6, 16 * 1024 * 1024).default(DEFAULT_MAX_FRAME),
      maxHeader: int(256, 1024 * 1024).default(DEFAULT_MAX_HEADER),
      maxMessage: int(256, 1024 * 1024).default(DEFAULT_MAX_MESSAGE),
      maxOpenTransfers: int(1, 65_536).default(DEFAULT_MAX_OPEN_TRANSFERS),
      maxTransfersPerSender: int(1, 65_536).default(DEFAULT_MAX_TRANSFERS_PER_SENDER),
      transferIdleMs: int(100, 3_600_000).default(DEFAULT_TRANSFER_IDLE_MS),
      maxConnections: int(1).default(DEFAULT_MAX_CONNECTIONS),
      maxConnectionsPerAddress: int(1).default(DEFAULT_MAX_CONNECTIONS_PER_ADDRESS),
      handshakeTimeoutMs: int(100, 120_000).default(DEFAULT_HANDSHAKE_TIMEOUT_MS),
      highWaterMark: int(64 * 1024).default(DEFAULT_HIGH_WATER_MARK),
      tlsWritePiece: int(16 * 1024, 16 * 1024 * 1024).default(DEFAULT_TLS_WRITE_PIECE),
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

const loader = createConfigLoader({
  schema: relayConfigSchema,
  envPrefix: ENV_PREFIX,
  code: 'ERR_RELAY_CONFIG',
  paths: ['tls.cert', 'tls.key', 'tls.ca', 'tls.crl', 'directory.file', 'certificates.issuersFile', 'nats.tls.ca', 'nats.tls.cert', 'nats.tls.key'],
});

/** Every leaf key of the relay config, each settable by the env var {@link envVarFor} names. */
export const relayConfigLeaves = loader.leaves;

/** The env var that sets a dotted key: `limits.maxFrame` -> HIE_RELAY_LIMITS_MAX_FRAME, `nats.tls.ca` -> HIE_RELAY_NATS_TLS_CA. */
export function envVarFor(key: string): string {
  return loader.envVar(key);
}

/**
 * Validates a config object, with env vars (HIE_RELAY_*, one per schema leaf)
 * overriding its values, and returns it with every default applied. Throws a
 * ConfigError (`ERR_RELAY_CONFIG`) naming every bad key.
 */
export function parseRelayConfig(input: unknown, env: NodeJS.ProcessEnv = {}): RelayConfig {
  return loader.parse(input, env);
}

/**
 * Reads a YAML or JSON config file (`.json` in any case; YAML otherwise),
 * applies env overrides and validates. Relative TLS paths (`tls.*`,
 * `nats.tls.*`) resolve against the file's directory.
 */
export function loadRelayConfig(path: string, env: NodeJS.ProcessEnv = process.env): RelayConfig {
  return loader.load(path, env);
}
