import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError, configLeaves as commonConfigLeaves, createConfigLoader, type LeafKind } from '../common/index.ts';
import { HOSPITAL_ID_PATTERN } from '../certs/index.ts';
import { API_ROLES, MIN_TOKEN_LENGTH, type ApiRole, type ApiToken } from './api/auth.ts';
import { MIN_PATIENT_SECRET_BYTES } from './consent/patient.ts';
import { MAX_BATCH_ITEMS } from './crypto/format.ts';
import { DEFAULT_CODE_SECONDS } from './patients/service.ts';
import { DEFAULT_MAX_BATCH } from './engine/index.ts';
import { DEFAULT_RECOVERY_MIN_PEERS, DEFAULT_RECOVERY_TIMEOUT_MS } from '../ledger/index.ts';
import { DEFAULT_MAX_CONSENT_DECISIONS, MAX_CONSENT_DECISIONS } from './store/consent-decisions.ts';
import { witnessPolicySchema } from '../ledger/policy.ts';
import { DEFAULT_REPLICATION_MODE, REPLICATION_MODES } from '../ledger/sealed.ts';

/** Default local API address: loopback only, so only the EHR host can reach it. */
export const DEFAULT_API_HOST = '127.0.0.1';
/** Default local API port. */
export const DEFAULT_API_PORT = 8480;
/** Largest exchange body accepted by the API (bytes); imaging studies can be large. */
export const DEFAULT_MAX_EXCHANGE_BYTES = 16 * 1024 ** 3;
/** Sends in flight at once; more are queued. */
export const DEFAULT_MAX_CONCURRENT_SENDS = 4;
/** Bodies up to this size are kept in the state database and travel in batch envelopes (`limits.inlineBodyBytes`). */
export const DEFAULT_INLINE_BODY_BYTES = 256 * 1024;
/** Largest `limits.inlineBodyBytes`: a batch of one such body must fit a batch envelope. */
export const MAX_INLINE_BODY_BYTES = 1024 * 1024;
/** Minutes without a request after which a console session ends (`console.sessionIdleMinutes`). */
export const DEFAULT_CONSOLE_SESSION_IDLE_MINUTES = 15;
/** Env var prefix: `api.port` is HIE_AGENT_API_PORT. */
export const AGENT_ENV_PREFIX = 'HIE_AGENT_';

/** An invalid agent configuration (code `ERR_AGENT_CONFIG`): the one config error class of common/, under the agent's name. */
export { ConfigError as AgentConfigError };

/** A config error of the agent: `keys` names the dotted keys at fault. */
const configError = (message: string, keys: string[]): ConfigError => new ConfigError(message, keys, 'ERR_AGENT_CONFIG');

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.number().int().min(min).max(max);
const wsUrl = z.string().regex(/^wss:\/\/[^\s/]+(:\d+)?(\/\S*)?$/, 'must be a wss:// URL');

/** The agent configuration schema (every key is documented in docs/agent.md). */
export const agentConfigSchema = z.strictObject({
  id: z.string().regex(HOSPITAL_ID_PATTERN, 'must be 2-63 characters of a-z, 0-9 and -'),
  identity: z.strictObject({
    cert: z.string().min(1),
    key: z.string().min(1),
    ca: z.string().min(1),
    crl: z.string().min(1).optional(),
    passphraseEnv: z.string().min(1).optional(),
  }),
  relay: z.strictObject({ urls: z.array(wsUrl).min(1).max(16) }),
  /** Hospitals whose ledger feeds this agent replicates (gossip peers). */
  peers: z.array(z.string().regex(HOSPITAL_ID_PATTERN)).max(1000).default([]),
  dataDir: z.string().min(1),
  api: z
    .strictObject({
      host: z.string().min(1).default(DEFAULT_API_HOST),
      port: int(0, 65535).default(DEFAULT_API_PORT),
      /** Env var holding `name:token[,name:token...]`. */
      tokensEnv: z.string().min(1).default('HIE_AGENT_API_TOKENS'),
      /** File with one `name:token` per line (alternative to tokensEnv). */
      tokensFile: z.string().min(1).optional(),
    })
    .prefault({}),
  patientSecret: z
    .strictObject({
      /** Env var holding the patient-id HMAC secret (hex, at least 32 bytes). */
      env: z.string().min(1).default('HIE_AGENT_PATIENT_SECRET'),
      /** File holding the secret (hex); takes precedence over env. */
      file: z.string().min(1).optional(),
    })
    .prefault({}),
  patients: z
    .strictObject({
      /**
       * The hospital's own patient identifier system (a URI, e.g. its MRN system): a bare patient id is a value of it,
       * matched only against Bundle identifiers of this system. Unset: a bare id matches a value of any system.
       */
      identifierSystem: z
        .string()
        .regex(/^[A-Za-z][A-Za-z0-9+.-]*:[^\s|]+$/, 'must be a URI (e.g. urn:oid:1.2.3 or https://hospital.example/mrn) without spaces or |')
        .max(200)
        .optional(),
      /**
       * The Issuer of Patient ID (0010,0021) the hospital's own DICOM writes: a DICOM Patient ID with this issuer (or
       * none) is a value of identifierSystem. Other issuers: an OID is urn:oid:<oid>, anything else a system of that name.
       */
      dicomIssuer: z.string().min(1).max(64).optional(),
      /** Patients as a party (docs/patients.md): enrolment codes, consent requests they sign, their access log, through the relay. */
      app: z
        .strictObject({
          /** Connect the patient hub to the relay and serve the `/v1/patients` routes. */
          enabled: z.boolean().default(false),
          /** Where the relay serves the patient app; default `https://RELAY/patient/` of the first `relay.urls`. */
          url: z.url({ protocol: /^https$/ }).optional(),
          /** How long a one-time enrolment code (and its QR code) is good for, in seconds. */
          codeSeconds: int(60, 86_400).default(DEFAULT_CODE_SECONDS),
        })
        .prefault({}),
    })
    .prefault({}),
  /** What this agent requires, as a recipient, of the consent a release is under (docs/patients.md). */
  consent: z
    .strictObject({
      /** Refuse releases under a consent the patient did not sign on their device (hospital-attested, or not in this agent's ledger copy). */
      requirePatientSigned: z.boolean().default(false),
    })
    .prefault({}),
  inbox: z
    .strictObject({
      /** A directory the EHR watches: each delivered item is also written there (see InboxDirectory). */
      directory: z.string().min(1).optional(),
      webhook: z
        .strictObject({
          // Records requests name the patient in clear: plain http only to this machine.
          url: z.url({ protocol: /^https?$/ }).refine((u) => {
            const url = new URL(u);
            return url.protocol === 'https:' || ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname);
          }, 'must be https (http only to localhost, 127.0.0.1 or [::1])'),
          tokenEnv: z.string().min(1).optional(),
        })
        .optional(),
    })
    .prefault({}),
  limits: z
    .strictObject({
      maxExchangeBytes: int(1).default(DEFAULT_MAX_EXCHANGE_BYTES),
      maxConcurrentSends: int(1, 256).default(DEFAULT_MAX_CONCURRENT_SENDS),
      /** Seal and send a binary body while it uploads (its trailer waits until it is stored and logged). */
      sendWhileUploading: z.boolean().default(true),
      /** Bodies up to this size (with a Content-Length) are kept in the state database and sent in batch envelopes; 0 turns that off. */
      inlineBodyBytes: int(0, MAX_INLINE_BODY_BYTES).default(DEFAULT_INLINE_BODY_BYTES),
      /** Most small exchanges to one recipient sealed into one batch envelope (1: each in its own). */
      maxBatchExchanges: int(1, MAX_BATCH_ITEMS).default(DEFAULT_MAX_BATCH),
      /**
       * Worker threads that validate FHIR Bundles, off the main thread (each holds its own copy of the R4 definitions,
       * about 60 MiB); 0: on the main thread. Unset: 1 (fhir/validation-pool.ts DEFAULT_VALIDATION_THREADS).
       */
      fhirValidationThreads: int(0, 16).optional(),
      /** Consent decisions (permit and deny) the local decision log keeps, newest first (docs/consent.md). */
      maxConsentDecisions: int(1, MAX_CONSENT_DECISIONS).default(DEFAULT_MAX_CONSENT_DECISIONS),
    })
    .prefault({}),
  /** Getting the agent's own ledger feed back from its peers at start-up (docs/recovery.md). */
  recovery: z
    .strictObject({
      /** How long one round waits for the peers' answers, in ms. */
      timeoutMs: int(1000, 3_600_000).default(DEFAULT_RECOVERY_TIMEOUT_MS),
      /** Peers that must answer before appends go on while others stay silent; 0: carry on after the timeout anyway. */
      minPeers: int(0, 1000).default(DEFAULT_RECOVERY_MIN_PEERS),
    })
    .prefault({}),
  /** What each peer receives of this agent's ledger feed (docs/replication.md). */
  replication: z
    .strictObject({
      /** `private`: each peer gets in the clear only the entries that concern it, the rest sealed to us; `full`: every peer gets the whole feed in the clear. */
      mode: z.enum(REPLICATION_MODES).default(DEFAULT_REPLICATION_MODE),
    })
    .prefault({}),
  ledger: z
    .strictObject({
      witness: z
        .strictObject({
          /** When a checkpoint counts as witnessed (ledger/policy.ts): `quorum` witnesses among `witnesses` (agent ids or vkeys; empty: any agent but the author). */
          policy: witnessPolicySchema.prefault({}),
        })
        .prefault({}),
    })
    .prefault({}),
  log: z.strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') }).prefault({}),
  /** The compliance console at /console (docs/compliance-console.md). */
  console: z
    .strictObject({
      enabled: z.boolean().default(true),
      sessionIdleMinutes: int(1, 24 * 60).default(DEFAULT_CONSOLE_SESSION_IDLE_MINUTES),
    })
    .prefault({}),
  /** SMART Health Card issuance (docs/certificates.md): the cards' `iss`, `<relay certificate listener>/issuers/<id>`; unset: none issued. */
  certificates: z
    .strictObject({
      iss: z
        .url({ protocol: /^https$/ })
        .max(256)
        .optional(),
    })
    .prefault({}),
});

/** A validated agent configuration. */
export type AgentConfig = z.output<typeof agentConfigSchema>;

const loader = createConfigLoader({
  schema: agentConfigSchema,
  envPrefix: AGENT_ENV_PREFIX,
  code: 'ERR_AGENT_CONFIG',
  paths: ['identity.cert', 'identity.key', 'identity.ca', 'identity.crl', 'dataDir', 'api.tokensFile', 'patientSecret.file', 'inbox.directory'],
});

/** Every leaf key of a config schema (the agent's by default) with its kind, e.g. `api.port` -> number. */
export function configLeaves(schema: z.ZodObject = agentConfigSchema, prefix = ''): Map<string, LeafKind> {
  return commonConfigLeaves(schema, prefix);
}

/** The env var that sets a dotted key: `limits.maxExchangeBytes` -> HIE_AGENT_LIMITS_MAX_EXCHANGE_BYTES. */
export function agentEnvVar(key: string): string {
  return loader.envVar(key);
}

/** Validates a config object with HIE_AGENT_* env overrides (one per schema leaf), defaults applied; throws AgentConfigError naming every bad key. */
export function parseAgentConfig(input: unknown, env: NodeJS.ProcessEnv = {}): AgentConfig {
  return loader.parse(input, env);
}

/**
 * Reads a YAML or JSON agent config file (`.json` in any case), applies env
 * overrides and validates; relative paths resolve against the file's directory.
 */
export function loadAgentConfig(path: string, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  return loader.load(path, env);
}

/**
 * Parses `name[@role]:token` entries (comma- or newline-separated); tokens
 * must be at least MIN_TOKEN_LENGTH characters; the role is one of
 * API_ROLES (`ehr`, `compliance`, `admin`), and an entry without one is
 * `admin` (every route, as before roles existed).
 */
export function parseTokens(text: string, source: string): ApiToken[] {
  const tokens: ApiToken[] = [];
  for (const raw of text.split(/[,\n]/)) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const i = line.indexOf(':');
    const head = i > 0 ? line.slice(0, i) : '';
    const token = i > 0 ? line.slice(i + 1) : '';
    const at = head.indexOf('@');
    const name = at < 0 ? head : head.slice(0, at);
    const role = at < 0 ? undefined : head.slice(at + 1);
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name) || token.length < MIN_TOKEN_LENGTH || /\s/.test(token)) {
      // Never echo the token itself.
      throw configError(`${source}: each entry must be name[@role]:token with a token of at least ${MIN_TOKEN_LENGTH} non-space characters`, ['api']);
    }
    if (role !== undefined && !(API_ROLES as readonly string[]).includes(role)) {
      throw configError(`${source}: token ${name}: the role must be one of ${API_ROLES.join(', ')}`, ['api']);
    }
    tokens.push(role === undefined ? { name, token } : { name, token, role: role as ApiRole });
  }
  if (tokens.length === 0) throw configError(`${source}: no API tokens configured`, ['api']);
  return tokens;
}

/** Loads the API tokens from `api.tokensFile` or the `api.tokensEnv` variable. */
export function loadApiTokens(config: AgentConfig, env: NodeJS.ProcessEnv = process.env): ApiToken[] {
  if (config.api.tokensFile) {
    let text: string;
    try {
      text = readFileSync(config.api.tokensFile, 'utf8');
    } catch (err) {
      throw configError(`config key api.tokensFile: cannot read ${config.api.tokensFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, [
        'api.tokensFile',
      ]);
    }
    return parseTokens(text, 'api.tokensFile');
  }
  const value = env[config.api.tokensEnv];
  if (!value) throw configError(`config key api.tokensEnv: environment variable ${config.api.tokensEnv} is not set`, ['api.tokensEnv']);
  return parseTokens(value, config.api.tokensEnv);
}

/** Loads the patient-id HMAC secret (hex) from `patientSecret.file` or its env variable. */
export function loadPatientSecret(config: AgentConfig, env: NodeJS.ProcessEnv = process.env): Buffer {
  let hex: string | undefined;
  let source: string;
  if (config.patientSecret.file) {
    source = 'patientSecret.file';
    try {
      hex = readFileSync(config.patientSecret.file, 'utf8').trim();
    } catch (err) {
      throw configError(`config key patientSecret.file: cannot read ${config.patientSecret.file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, [source]);
    }
  } else {
    source = 'patientSecret.env';
    hex = env[config.patientSecret.env]?.trim();
    if (!hex) throw configError(`config key patientSecret.env: environment variable ${config.patientSecret.env} is not set`, [source]);
  }
  if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length % 2 !== 0 || hex.length < MIN_PATIENT_SECRET_BYTES * 2) {
    throw configError(`config key ${source}: the patient secret must be at least ${MIN_PATIENT_SECRET_BYTES} bytes of hex (e.g. openssl rand -hex 32)`, [
      source,
    ]);
  }
  return Buffer.from(hex, 'hex');
}
