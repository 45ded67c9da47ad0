import { readFileSync } from 'node:fs';
import { dirname, extname, isAbsolute, resolve } from 'node:path';
import YAML from 'yaml';
import type { z } from 'zod';

/** Stable codes of a configuration error, one per part. */
export type ConfigErrorCode = 'ERR_CONFIG' | 'ERR_RELAY_CONFIG' | 'ERR_AGENT_CONFIG';

/** An invalid configuration; the message names each bad key and what was wrong with it. */
export class ConfigError extends Error {
  readonly code: ConfigErrorCode;
  /** Dotted config keys at fault, e.g. `listen.port`; `(file)`, `(root)` or `(argv)` when no key is. */
  readonly keys: string[];

  constructor(message: string, keys: string[], code: ConfigErrorCode = 'ERR_CONFIG', options?: { cause?: unknown }) {
    super(message, options);
    this.name = this.constructor.name;
    this.code = code;
    this.keys = keys;
  }
}

/** How an env var's text becomes a leaf's value: numbers and booleans parsed, lists split on commas. */
export type LeafKind = 'string' | 'number' | 'boolean' | 'list';

type Def = { type: string; innerType?: z.ZodType; element?: z.ZodType };
const defOf = (s: z.ZodType): Def => (s as unknown as { def: Def }).def;
/** Wrappers that do not change what a value looks like in a file or the environment. */
const WRAPPERS = new Set(['default', 'prefault', 'optional', 'nullable', 'readonly', 'catch', 'nonoptional']);

function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema;
  for (let def = defOf(s); WRAPPERS.has(def.type) && def.innerType; def = defOf(s)) s = def.innerType;
  return s;
}

function kindOf(schema: z.ZodType, key: string): LeafKind {
  const type = defOf(unwrap(schema)).type;
  if (type === 'string' || type === 'enum') return 'string';
  if (type === 'number') return 'number';
  if (type === 'boolean') return 'boolean';
  if (type === 'array') {
    const element = defOf(unwrap(defOf(unwrap(schema)).element as z.ZodType)).type;
    if (element === 'string' || element === 'enum') return 'list';
  }
  // A new leaf type must be given an env coercion here rather than silently lose its env var.
  throw new TypeError(`config key ${key}: no env coercion for a ${type} leaf`);
}

/** Every leaf key of an object schema (nested objects walked) with its kind, e.g. `nats.tls.ca` -> string. */
export function configLeaves(schema: z.ZodObject, prefix = ''): Map<string, LeafKind> {
  const out = new Map<string, LeafKind>();
  for (const [key, value] of Object.entries(schema.shape)) {
    const path = prefix ? `${prefix}.${key}` : key;
    const inner = unwrap(value as z.ZodType);
    if (defOf(inner).type === 'object') for (const [k, v] of configLeaves(inner as z.ZodObject, path)) out.set(k, v);
    else out.set(path, kindOf(value as z.ZodType, path));
  }
  return out;
}

/** The env var that sets a dotted key: (`HIE_RELAY_`, `limits.maxFrame`) -> HIE_RELAY_LIMITS_MAX_FRAME. */
export function configEnvVar(prefix: string, key: string): string {
  return (
    prefix +
    key
      .split('.')
      .map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase())
      .join('_')
  );
}

function coerce(raw: string, kind: LeafKind): unknown {
  // Anything that does not parse is passed through as text, so the schema names the key and the expected type.
  if (kind === 'number') return /^-?\d+$/.test(raw.trim()) ? Number(raw) : raw;
  if (kind === 'boolean') return raw === 'true' ? true : raw === 'false' ? false : raw;
  if (kind === 'list')
    return raw
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  return raw;
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const part of path.slice(0, -1)) {
    const next = node[part];
    if (!next || typeof next !== 'object' || Array.isArray(next)) node[part] = {};
    node = node[part] as Record<string, unknown>;
  }
  node[path[path.length - 1] as string] = value;
}

function getPath(target: unknown, path: string[]): unknown {
  let node = target;
  for (const part of path) node = node && typeof node === 'object' ? (node as Record<string, unknown>)[part] : undefined;
  return node;
}

/** What a part tells {@link createConfigLoader} about its configuration. */
export interface ConfigSpec<S extends z.ZodObject> {
  /** The schema: validates, explains, and supplies every default. */
  schema: S;
  /** Env var prefix, e.g. `HIE_RELAY_` (`listen.port` is then HIE_RELAY_LISTEN_PORT). */
  envPrefix: string;
  /** The code every error of this loader carries. */
  code: ConfigErrorCode;
  /** Dotted keys holding file or directory paths; when loaded from a file, relative ones resolve against its directory. */
  paths?: readonly string[];
}

/** A part's configuration loader; every method returns the fully resolved config (defaults applied). */
export interface ConfigLoader<S extends z.ZodObject> {
  readonly schema: S;
  readonly envPrefix: string;
  /** Every leaf key and its kind; each has the env var {@link ConfigLoader.envVar} names. */
  readonly leaves: ReadonlyMap<string, LeafKind>;
  /** The env var that sets a dotted key. */
  envVar(key: string): string;
  /** Validates a config object with env overrides on top; throws a {@link ConfigError} naming every bad key. */
  parse(input: unknown, env?: NodeJS.ProcessEnv): z.output<S>;
  /** Reads a YAML or JSON file (`.json`, any case; YAML otherwise), then as {@link ConfigLoader.parse}, then resolves relative paths. */
  load(path: string, env?: NodeJS.ProcessEnv): z.output<S>;
}

/** Builds the one config loader of a part from its schema: env overrides derived from the schema's leaves. */
export function createConfigLoader<S extends z.ZodObject>(spec: ConfigSpec<S>): ConfigLoader<S> {
  const { schema, envPrefix, code } = spec;
  const leaves = configLeaves(schema);
  const envVar = (key: string): string => configEnvVar(envPrefix, key);
  const names = new Map<string, string>();
  for (const key of leaves.keys()) {
    const name = envVar(key);
    const other = names.get(name);
    if (other !== undefined) throw new TypeError(`config keys ${other} and ${key} would share the env var ${name}`);
    names.set(name, key);
  }
  const paths = spec.paths ?? [];
  for (const key of paths) if (leaves.get(key) !== 'string') throw new TypeError(`config key ${key} is listed as a path but is not a string leaf`);
  const sections = Object.keys(schema.shape).join(', ');

  const parse = (input: unknown, env: NodeJS.ProcessEnv = {}): z.output<S> => {
    if (input !== undefined && (typeof input !== 'object' || input === null || Array.isArray(input))) {
      throw new ConfigError(`config must be an object (keys: ${sections})`, ['(root)'], code);
    }
    const merged = structuredClone((input ?? {}) as Record<string, unknown>);
    const fromEnv = new Map<string, string>();
    for (const [key, kind] of leaves) {
      const name = envVar(key);
      const raw = env[name];
      if (raw === undefined) continue;
      setPath(merged, key.split('.'), coerce(raw, kind));
      fromEnv.set(key, name);
    }
    const result = schema.safeParse(merged);
    if (result.success) return result.data;
    const keys: string[] = [];
    const lines = result.error.issues.map((issue) => {
      const path = issue.path.map(String);
      const base = path.join('.');
      if (issue.code === 'unrecognized_keys') {
        const unknown = issue.keys.map((k) => (base ? `${base}.${k}` : k));
        keys.push(...unknown);
        return `config key ${unknown.join(', ')}: unknown key`;
      }
      const key = base || '(root)';
      keys.push(key);
      // `nats.servers.0` came from the env var of `nats.servers`: name the longest key set from env.
      let src: string | undefined;
      for (let n = path.length; n > 0 && src === undefined; n--) src = fromEnv.get(path.slice(0, n).join('.'));
      return `config key ${key}${src ? ` (from ${src})` : ''}: ${issue.message}`;
    });
    throw new ConfigError(lines.join('; '), keys, code);
  };

  const load = (path: string, env: NodeJS.ProcessEnv = process.env): z.output<S> => {
    const config = parse(readConfigFile(path, code), env);
    const base = dirname(resolve(path));
    for (const key of paths) {
      const at = key.split('.');
      const value = getPath(config, at);
      if (typeof value === 'string' && !isAbsolute(value)) setPath(config as Record<string, unknown>, at, resolve(base, value));
    }
    return config;
  };

  return { schema, envPrefix, leaves, envVar, parse, load };
}

/** Reads and parses a YAML or JSON config file (JSON when the extension is `.json`, in any case); an empty file is `{}`. */
export function readConfigFile(path: string, code: ConfigErrorCode = 'ERR_CONFIG'): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, ['(file)'], code, { cause: err });
  }
  const json = extname(path).toLowerCase() === '.json';
  try {
    return (json ? JSON.parse(text) : YAML.parse(text)) ?? {};
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid ${json ? 'JSON' : 'YAML'}: ${(err as Error).message.split('\n')[0]}`, ['(file)'], code, {
      cause: err,
    });
  }
}
