import { isIP } from 'node:net';
import { PkiError } from './errors.ts';

/** Hospital ids: lowercase letters, digits and dashes, 2 to 63 characters. */
export const HOSPITAL_ID_PATTERN = /^[a-z0-9-]{2,63}$/;

/** Prefix of the SAN URI that names a hospital agent. */
export const AGENT_URI_PREFIX = 'urn:hie:agent:';

/** True when `id` is a well-formed hospital id. */
export function isHospitalId(id: unknown): id is string {
  return typeof id === 'string' && HOSPITAL_ID_PATTERN.test(id);
}

/** Returns `id` or throws ERR_PKI_INVALID_ID with a message that says why. */
export function assertHospitalId(id: unknown): string {
  if (!isHospitalId(id)) {
    const shown = typeof id === 'string' ? JSON.stringify(id.slice(0, 80)) : typeof id;
    throw new PkiError('ERR_PKI_INVALID_ID', `invalid hospital id ${shown}: use 2-63 characters of a-z, 0-9 and '-'`);
  }
  return id;
}

/** SAN URI for a hospital id. */
export function agentUri(id: string): string {
  return `${AGENT_URI_PREFIX}${assertHospitalId(id)}`;
}

const DNS_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/i;

/** Classifies a relay host name as a DNS name or an IP address, or throws ERR_PKI_INVALID_HOST. */
export function classifyHost(host: string): { type: 'dns' | 'ip'; value: string } {
  if (isIP(host) !== 0) return { type: 'ip', value: host };
  const labels = host.split('.');
  const wildcardOk = labels[0] === '*' && labels.length > 2;
  const rest = wildcardOk ? labels.slice(1) : labels;
  if (host.length > 253 || host.length === 0 || !rest.every((l) => DNS_LABEL.test(l))) {
    throw new PkiError('ERR_PKI_INVALID_HOST', `invalid host ${JSON.stringify(host.slice(0, 80))}: expected a DNS name or an IP address`);
  }
  return { type: 'dns', value: host.toLowerCase() };
}
