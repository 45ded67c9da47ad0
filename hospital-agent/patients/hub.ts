// One job: the agent's patient hub, a WebSocket to the relay (mTLS, the agent certificate) that carries every patient channel.
import { webcrypto } from 'node:crypto';
import type { Logger } from 'pino';
import { WebSocket } from 'ws';
import { clientTlsOptions, type Identity } from '../../certs/index.ts';
import { exportPublic, type EcPublicJwk } from '../../patient-app/protocol.js';
import { PATIENT_HUB_PATH } from '../../relay/protocol/patient-credential.ts';
import type { PatientService } from './service.ts';

// The relay's hub frame layout (relay/patients/channels.ts), repeated here: the agent does not import the relay.
const OPEN = 1;
const DATA = 2;
const CLOSE = 3;
const CHANNEL_CHARS = 22;

function frame(kind: number, channel: string, payload?: Uint8Array): Buffer {
  const head = Buffer.alloc(1 + CHANNEL_CHARS);
  head[0] = kind;
  head.write(channel, 1, 'latin1');
  return payload ? Buffer.concat([head, payload]) : head;
}

/** A fresh agent patient-channel key (ECDH P-256, private half non-extractable). */
export async function generateAgentPatientKey(): Promise<{ privateKey: webcrypto.CryptoKey; publicJwk: EcPublicJwk }> {
  const pair = await webcrypto.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits']);
  return { privateKey: pair.privateKey, publicJwk: await exportPublic(pair.publicKey) };
}

/** Options of the hub connection. */
export interface PatientHubOptions {
  /** The relay's base URL, `wss://relay.example:8443`. */
  url: string;
  identity: () => Identity;
  servername?: string;
  service: PatientService;
  log: Logger;
  /** Called when an open hub connection closes (the agent reconnects). */
  onClose?: () => void;
}

/** Connects the patient service to the relay; `connect` resolves once the hub is open. */
export class PatientHub {
  private ws: WebSocket | undefined;

  constructor(private readonly o: PatientHubOptions) {
    o.service.send = (channel, bytes) => {
      if (this.ws?.readyState !== WebSocket.OPEN) return;
      this.ws.send(bytes ? frame(DATA, channel, bytes) : frame(CLOSE, channel));
    };
  }

  async connect(): Promise<void> {
    const tls = { ...clientTlsOptions(this.o.identity()), ...(this.o.servername ? { servername: this.o.servername } : {}) };
    const ws = new WebSocket(`${this.o.url}${PATIENT_HUB_PATH}`, { ...tls, perMessageDeflate: false });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`patient hub refused: HTTP ${res.statusCode ?? 0}`)));
    });
    this.ws = ws;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary || data.length < 1 + CHANNEL_CHARS) return;
      const channel = data.toString('latin1', 1, 1 + CHANNEL_CHARS);
      if (data[0] === OPEN) this.o.service.onOpen(channel);
      else if (data[0] === DATA) this.o.service.onData(channel, data.subarray(1 + CHANNEL_CHARS));
      else if (data[0] === CLOSE) this.o.service.onClose(channel);
    });
    ws.on('close', () => {
      this.o.log.info('patient hub closed');
      this.o.service.onHubClose();
      this.o.onClose?.();
    });
    ws.on('error', (err) => this.o.log.warn({ msg: err.message }, 'patient hub error'));
  }

  close(): void {
    this.ws?.close(1000);
  }
}
