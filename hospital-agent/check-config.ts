/**
 * `hie-agent check-config`: everything `start` would read, checked without
 * starting: the config file, the API tokens and the patient secret (from
 * this environment), and every file the config names. The certificate must
 * match its key and name this agent, the CA must have issued and signed it,
 * it must be valid now, and the CRL must be signed by the CA, current, and
 * not list the certificate. Every problem is one line; none means the agent
 * can start with this config.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { hospitalIdFromCertificate, normalizeSerial, parseCrl } from '../certs/index.ts';
import { loadApiTokens, loadPatientSecret, type AgentConfig } from './config.ts';

/** What check-config found: one line per problem, and a summary of what holds. */
export interface ConfigCheck {
  problems: string[];
  tokens: number;
}

/** PEM certificates in `text`, in order. */
function pemCertificates(text: string): X509Certificate[] {
  return (text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((p) => new X509Certificate(p));
}

/** Reads a file the config names; a problem line (with the config key) when it cannot be read. */
function readNamed(key: string, path: string, problems: string[]): string | undefined {
  try {
    if (!statSync(path).isFile()) {
      problems.push(`${key}: ${path} is not a file`);
      return undefined;
    }
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    problems.push(`${key}: cannot read ${path} (${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (code ?? 'error')})`);
    return undefined;
  }
}

const day = (d: Date): string => d.toISOString().slice(0, 10);

/** Checks `config` as `start` would use it, at `now`. */
export function checkAgentConfig(config: AgentConfig, env: NodeJS.ProcessEnv = process.env, now: Date = new Date()): ConfigCheck {
  const problems: string[] = [];
  let tokens = 0;
  try {
    tokens = loadApiTokens(config, env).length;
  } catch (err) {
    problems.push((err as Error).message.split('\n')[0] as string);
  }
  try {
    loadPatientSecret(config, env);
  } catch (err) {
    problems.push((err as Error).message.split('\n')[0] as string);
  }

  const { identity } = config;
  const certText = readNamed('identity.cert', identity.cert, problems);
  const keyText = readNamed('identity.key', identity.key, problems);
  const caText = readNamed('identity.ca', identity.ca, problems);
  const crlText = identity.crl ? readNamed('identity.crl', identity.crl, problems) : undefined;

  let cert: X509Certificate | undefined;
  if (certText !== undefined) {
    try {
      cert = pemCertificates(certText)[0];
      if (!cert) problems.push(`identity.cert: ${identity.cert} holds no PEM certificate`);
    } catch (err) {
      problems.push(`identity.cert: ${identity.cert} is not a valid certificate (${(err as Error).message})`);
    }
  }
  let cas: X509Certificate[] = [];
  if (caText !== undefined) {
    try {
      cas = pemCertificates(caText);
      if (cas.length === 0) problems.push(`identity.ca: ${identity.ca} holds no PEM certificate`);
    } catch (err) {
      problems.push(`identity.ca: ${identity.ca} is not a valid certificate (${(err as Error).message})`);
    }
  }
  if (keyText !== undefined) {
    try {
      const passphrase = identity.passphraseEnv ? env[identity.passphraseEnv] : undefined;
      if (identity.passphraseEnv && !passphrase) problems.push(`identity.passphraseEnv: environment variable ${identity.passphraseEnv} is not set`);
      const key = createPrivateKey({ key: keyText, ...(passphrase ? { passphrase } : {}) });
      if (cert && !cert.checkPrivateKey(key)) problems.push(`identity.key: ${identity.key} is not the key of the certificate ${identity.cert}`);
    } catch (err) {
      if (!(identity.passphraseEnv && !env[identity.passphraseEnv]))
        problems.push(`identity.key: ${identity.key} is not a usable private key (${(err as Error).message.split('\n')[0]})`);
    }
  }
  if (cert) {
    try {
      const id = hospitalIdFromCertificate(cert);
      if (id !== config.id) problems.push(`identity.cert: the certificate is agent '${id}', the config's id is '${config.id}'`);
    } catch {
      problems.push(`identity.cert: the certificate does not name a hospital agent (SAN urn:hie:agent:<id> matching CN)`);
    }
    if (Date.parse(cert.validTo) < now.getTime()) problems.push(`identity.cert: the certificate expired on ${day(new Date(cert.validTo))}`);
    if (Date.parse(cert.validFrom) > now.getTime())
      problems.push(`identity.cert: the certificate is not valid before ${new Date(cert.validFrom).toISOString()}`);
    if (cas.length > 0 && !cas.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey)))
      problems.push(`identity.ca: no CA certificate in ${identity.ca} issued and signed the certificate ${identity.cert}`);
  }
  for (const ca of cas)
    if (Date.parse(ca.validTo) < now.getTime())
      problems.push(`identity.ca: the CA certificate ${ca.subject.replace(/\n/g, ', ')} expired on ${day(new Date(ca.validTo))}`);
  if (crlText !== undefined && cas.length > 0) {
    let crl: ReturnType<typeof parseCrl> | undefined;
    const errors: string[] = [];
    for (const ca of cas) {
      try {
        crl = parseCrl(crlText, ca.toString());
        break;
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
    if (!crl) problems.push(`identity.crl: ${identity.crl} ${errors[0] ?? 'is not a CRL of the CA'}`);
    else {
      if (crl.nextUpdate && crl.nextUpdate.getTime() < now.getTime())
        problems.push(`identity.crl: the CRL expired on ${crl.nextUpdate.toISOString()} (a new one from the operator is needed: peers are refused until then)`);
      if (cert && crl.revoked.has(normalizeSerial(cert.serialNumber)))
        problems.push(`identity.cert: the certificate (serial ${cert.serialNumber.toLowerCase()}) is revoked by the CRL`);
    }
  }
  for (const [key, path] of [
    ['dataDir', config.dataDir],
    ['inbox.directory', config.inbox.directory],
  ] as const) {
    if (!path) continue;
    try {
      if (!statSync(path).isDirectory()) problems.push(`${key}: ${path} is not a directory`);
      else accessSync(path, constants.W_OK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // A directory that does not exist yet is created at start.
      if (code !== 'ENOENT') problems.push(`${key}: ${path} is not writable (${code ?? 'error'})`);
    }
  }
  return { problems, tokens };
}
