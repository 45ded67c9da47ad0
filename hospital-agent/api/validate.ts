import type { z } from 'zod';
import { AgentError } from '../errors.ts';

/** Parses `value` with `schema`, or throws ERR_BAD_REQUEST naming the field (never echoing its value). */
export function parseRequest<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const path = issue?.path.map(String).join('.') || what;
  throw new AgentError('ERR_BAD_REQUEST', `${what}: ${path}: ${issue?.message ?? 'invalid'}`);
}
