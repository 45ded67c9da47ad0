// One job: admit a patient WebSocket (credential checked before the upgrade, refused with a status and code) and serve the app.
import { readFile } from 'node:fs/promises';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { WebSocketServer } from 'ws';
import { PATIENT_PATH } from '../protocol/patient-credential.ts';
import type { PatientChannels } from './channels.ts';
import { verifyPatientCredential, type CredentialTrust } from './credential.ts';
import { PatientRefusal } from './errors.ts';

/** Where the relay serves the patient app (static files, no build step). */
export const PATIENT_APP_PATH = '/patient/';
/** The folder the patient app's files are read from. */
export const PATIENT_APP_DIR = fileURLToPath(new URL('../../patient-app/', import.meta.url));
/** Response header naming the code a patient connection was refused with. */
export const PATIENT_REFUSAL_HEADER = 'x-hie-error';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.json': 'application/json',
};
/** Served with every app file: scripts from the relay itself only, nothing inline, no framing. */
const APP_HEADERS = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

/** What the patient gate needs. */
export interface PatientGateOptions {
  channels: PatientChannels;
  trust: () => CredentialTrust;
  log: Logger;
  accepting(): boolean;
}

function refuse(socket: Socket, status: number, code: string, why: string): void {
  const body = JSON.stringify({ code, message: why });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\n${PATIENT_REFUSAL_HEADER}: ${code}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  setTimeout(() => socket.destroy(), 1000).unref();
}

/** The patient side of the agent listener: upgrades on PATIENT_PATH and GETs under PATIENT_APP_PATH. */
export class PatientGate {
  private readonly wss: WebSocketServer;

  constructor(private readonly o: PatientGateOptions) {
    this.wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: o.channels.maxPayload, clientTracking: false });
  }

  /** True for a request this gate answers (an upgrade on PATIENT_PATH). */
  handlesUpgrade(req: IncomingMessage): boolean {
    return (req.url ?? '').split('?')[0] === PATIENT_PATH;
  }

  /** Checks the credential (query `cred`, and `pop` for a session) before the upgrade; refuses with 4xx/503 and a code. */
  async upgrade(req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    const { channels, log } = this.o;
    const deny = (err: PatientRefusal): void => {
      channels.refused.inc({ code: err.code });
      log.info({ status: err.status, code: err.code, msg: err.message }, 'patient connection refused');
      refuse(socket, err.status, err.code, err.message);
    };
    if (!this.o.accepting()) return refuse(socket, 503, 'ERR_RELAY_CLOSED', 'relay is shutting down');
    const query = new URL(req.url ?? '/', 'https://relay').searchParams;
    let admitted;
    try {
      admitted = await verifyPatientCredential(query.get('cred') ?? undefined, query.get('pop') ?? undefined, this.o.trust());
    } catch (err) {
      if (err instanceof PatientRefusal) return deny(err);
      throw err;
    }
    if (!channels.online(admitted.hospital))
      return deny(new PatientRefusal('ERR_PATIENT_HOSPITAL_OFFLINE', 'the hospital is not connected to this relay node'));
    this.wss.handleUpgrade(req, socket, head, (ws) => channels.acceptPatient(ws, admitted.hospital, admitted.channel));
  }

  /** Serves a patient app file for GET/HEAD under PATIENT_APP_PATH; true when it answered. */
  async serve(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const path = (req.url ?? '').split('?')[0] ?? '';
    if (!path.startsWith(PATIENT_APP_PATH) || (req.method !== 'GET' && req.method !== 'HEAD')) return false;
    const rel = decodeURIComponent(path.slice(PATIENT_APP_PATH.length)) || 'index.html';
    const file = normalize(join(PATIENT_APP_DIR, rel));
    const type = TYPES[extname(file)];
    if (!file.startsWith(PATIENT_APP_DIR.endsWith(sep) ? PATIENT_APP_DIR : PATIENT_APP_DIR + sep) || !type || file.endsWith('.d.ts')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return true;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { ...APP_HEADERS, 'content-type': type, 'content-length': body.length }).end(req.method === 'HEAD' ? undefined : body);
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
    return true;
  }
}
