import { z } from 'zod';
import { parsePatientId } from '../consent/patient.ts';
import { AgentError } from '../errors.ts';

/**
 * A patient id from a request, `value` or `system|value` (1-256 characters): one without a value (`system|`) is
 * refused here, with the field named, rather than by the keyed hash further in (a TypeError, answered 500).
 */
export const patientIdSchema = z
  .string()
  .trim()
  .min(1)
  .max(256)
  .refine((id) => parsePatientId(id).value !== '', 'a patient id needs a value (value or system|value)');

/** Parses `value` with `schema`, or throws ERR_BAD_REQUEST naming the field (never echoing its value). */
export function parseRequest<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const path = issue?.path.map(String).join('.') || what;
  throw new AgentError('ERR_BAD_REQUEST', `${what}: ${path}: ${issue?.message ?? 'invalid'}`);
}
