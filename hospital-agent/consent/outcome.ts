import { AgentError, type FhirIssue } from '../errors.ts';
import type { Outside } from './scope.ts';

/**
 * A consent's refusal of a FHIR Bundle's kinds of data (ERR_CONSENT_SCOPE or
 * ERR_CONSENT_SENSITIVE with what was outside its scope) as an error with
 * one FHIR issue per resource type, category or label left out, so the API
 * answers an OperationOutcome; any other error is returned as it is.
 */
export function scopeRefusalAsOutcome(err: unknown): unknown {
  if (!(err instanceof AgentError) || (err.code !== 'ERR_CONSENT_SCOPE' && err.code !== 'ERR_CONSENT_SENSITIVE')) return err;
  const outside = err.detail?.['outside'] as Outside | undefined;
  if (!outside) return err;
  const issues: FhirIssue[] = [
    ...outside.labels.map((l) => ({
      code: 'ERR_CONSENT_SENSITIVE' as const,
      expression: 'Bundle.entry.resource.meta.security',
      message: `sensitive label ${l} is not named by the consent`,
    })),
    ...outside.types.map((t) => ({
      code: 'ERR_CONSENT_SCOPE' as const,
      expression: `Bundle.entry.resource.ofType(${t})`,
      message: `resource type ${t} is outside the consent's scope`,
    })),
    ...outside.categories.map((c) => ({
      code: 'ERR_CONSENT_SCOPE' as const,
      expression: `Bundle.entry.resource.ofType(${c.split(' ')[0] ?? ''})`,
      message: `${c}: carries no category the consent names`,
    })),
  ];
  if (issues.length === 0) return err;
  return new AgentError(err.code, err.message, { cause: err, ...(err.detail ? { detail: err.detail } : {}), issues });
}
