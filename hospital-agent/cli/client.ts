/**
 * What every `hie-agent` client command shares: option parsing (node's
 * util.parseArgs), usage errors (exit 2), how to reach a running agent
 * (`--config FILE`, or `--api URL` with HIE_AGENT_TOKEN) and one API call
 * whose error becomes one line with the agent's code.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { joinDashValues } from '../../common/args.ts';
import { roleAllows, roleOf } from '../api/auth.ts';
import { loadAgentConfig, loadApiTokens } from '../config.ts';

/** Options of one command, as node's util.parseArgs takes them. */
export type Options = NonNullable<ParseArgsConfig['options']>;

/** Output sinks, so tests can capture what the CLI prints. */
export interface CliIo {
  out: (text: string) => void;
  err: (text: string) => void;
  /** True when stderr is a terminal (progress is drawn only there). */
  tty?: boolean;
}

/** The process's stdout and stderr. */
export const defaultIo: CliIo = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t), tty: process.stderr.isTTY === true };

/** A command line that cannot be run as given: exit 2. */
export class UsageError extends Error {
  readonly code = 'ERR_USAGE';
  readonly exitCode = 2;
}

/** Options every command that talks to a running agent takes. */
export const CLIENT_OPTIONS: Options = { config: { type: 'string' }, api: { type: 'string' }, json: { type: 'boolean' } };

/** The help lines of {@link CLIENT_OPTIONS}. */
export const CLIENT_HELP = `  --config FILE   the agent's config file (its API address and first API token)
  --api URL       the agent's API, e.g. http://127.0.0.1:8480 (the token from HIE_AGENT_TOKEN)
  --json          print the API's JSON answer instead of text`;

/** Parses `args` strictly; an unknown option or a missing value is a usage error naming the command's usage. */
export function parse(args: string[], options: Options, usage: string): { values: Record<string, unknown>; positionals: string[] } {
  try {
    return parseArgs({ args: joinDashValues(args, options), options, strict: true, allowPositionals: true }) as {
      values: Record<string, unknown>;
      positionals: string[];
    };
  } catch (err) {
    throw new UsageError(`${(err as Error).message.split('\n')[0]} (usage: ${usage})`);
  }
}

/** The patient id: `--patient`, or HIE_PATIENT_ID (which, unlike argv, other users cannot see in the process list). */
export function patientOf(values: Record<string, unknown>): string {
  const v = (values['patient'] as string | undefined) ?? process.env['HIE_PATIENT_ID'];
  if (!v) throw new UsageError('--patient is required (or set HIE_PATIENT_ID, which other users cannot see in the process list)');
  return v;
}

/** A required string option. */
export function need(values: Record<string, unknown>, name: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v === '') throw new UsageError(`--${name} is required`);
  return v;
}

/** Exactly one positional argument (an id), or a usage error. */
export function one(positionals: string[], what: string, usage: string): string {
  if (positionals.length !== 1 || !positionals[0]) throw new UsageError(`give the ${what} (usage: ${usage})`);
  return positionals[0];
}

/** How to reach a running agent's API. */
export interface ApiTarget {
  base: string;
  token: string;
}

/** The agent `--config FILE` or `--api URL` names. */
export function target(values: Record<string, unknown>): ApiTarget {
  if (typeof values['config'] === 'string') {
    const config = loadAgentConfig(values['config']);
    const tokens = process.env['HIE_AGENT_TOKEN'] ? [{ name: 'cli', token: process.env['HIE_AGENT_TOKEN'] }] : loadApiTokens(config);
    const host = config.api.host === '0.0.0.0' ? '127.0.0.1' : config.api.host.includes(':') ? `[${config.api.host}]` : config.api.host;
    // The CLI calls /v1: a token whose role allows it (ehr or admin) rather than, say, the compliance officer's.
    const usable = tokens.find((t) => roleAllows(roleOf(t), 'ehr')) ?? tokens[0];
    return { base: `http://${host}:${config.api.port}`, token: (usable as { token: string }).token };
  }
  if (typeof values['api'] === 'string') {
    const token = process.env['HIE_AGENT_TOKEN'];
    if (!token) throw new UsageError('set HIE_AGENT_TOKEN to an API token of the agent (or use --config FILE)');
    return { base: values['api'].replace(/\/$/, ''), token };
  }
  throw new UsageError('say which agent: --config FILE or --api URL');
}

/** The raw answer of one API call (for streamed bodies); throws the agent's error as one line with its code. */
export async function request(t: ApiTarget, path: string, init: RequestInit & { duplex?: 'half' } = {}): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(`${t.base}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${t.token}`, ...(init.headers as Record<string, string> | undefined) },
    });
  } catch (err) {
    throw new Error(`cannot reach the agent at ${t.base}: ${((err as Error).cause as Error | undefined)?.message ?? (err as Error).message}`, { cause: err });
  }
  if (!res.ok) {
    const text = await res.text();
    let e: { code?: string; message?: string; detail?: Record<string, unknown> } | undefined;
    try {
      const body = JSON.parse(text) as { error?: typeof e };
      e = body.error ?? outcomeError(body);
    } catch {
      e = undefined;
    }
    throw Object.assign(new Error(e?.message ?? `HTTP ${res.status}`), { code: e?.code ?? `HTTP_${res.status}`, detail: e?.detail, status: res.status });
  }
  return res;
}

/** One API call; resolves with its JSON answer (undefined for an empty one). */
export async function call(t: ApiTarget, path: string, init: RequestInit & { duplex?: 'half' } = {}): Promise<unknown> {
  const text = await (await request(t, path, init)).text();
  return text ? (JSON.parse(text) as unknown) : undefined;
}

/** Prints `value` as JSON with `--json`, else the text. */
export function print(io: CliIo, json: boolean, value: unknown, text: () => string): void {
  io.out(json ? `${JSON.stringify(value, null, 2)}\n` : text());
}

/** The first issue of a FHIR OperationOutcome answer (FHIR refusals), as a code and message; undefined for anything else. */
function outcomeError(body: unknown): { code?: string; message?: string } | undefined {
  const o = body as { resourceType?: unknown; issue?: Array<{ details?: { coding?: Array<{ code?: string }>; text?: string } }> } | undefined;
  if (o?.resourceType !== 'OperationOutcome' || !Array.isArray(o.issue) || o.issue.length === 0) return undefined;
  const first = o.issue[0]?.details;
  const more = o.issue.length > 1 ? ` (and ${o.issue.length - 1} more)` : '';
  return { ...(first?.coding?.[0]?.code ? { code: first.coding[0].code } : {}), ...(first?.text ? { message: `${first.text}${more}` } : {}) };
}
