// One job: route bytes between admitted patient sockets and their hospital's patient hub, and meter them; nothing is kept.
import type { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { WebSocket } from 'ws';

/** Hub frame kinds (first byte of every binary hub frame; then the 22-character channel id, then the payload). */
export const HubFrame = { open: 1, data: 2, close: 3 } as const;
/** Bytes of the channel id in a hub frame (16 random bytes, base64url). */
export const HUB_CHANNEL_CHARS = 22;
/** Largest message a patient may send (bytes). */
export const DEFAULT_MAX_PATIENT_MESSAGE = 1024 * 1024;
/** A hub socket with more than this queued makes the relay refuse patient messages to it (close 1013) rather than buffer. */
export const DEFAULT_MAX_HUB_BUFFER = 16 * 1024 * 1024;

/** Encodes one hub frame. */
export function hubFrame(kind: number, channel: string, payload?: Uint8Array): Buffer {
  const head = Buffer.alloc(1 + HUB_CHANNEL_CHARS);
  head[0] = kind;
  head.write(channel, 1, 'latin1');
  return payload ? Buffer.concat([head, payload]) : head;
}

/** Decodes one hub frame, or undefined when it is malformed (every length checked). */
export function parseHubFrame(data: Buffer): { kind: number; channel: string; payload: Buffer } | undefined {
  if (data.length < 1 + HUB_CHANNEL_CHARS) return undefined;
  const kind = data[0] as number;
  if (kind !== HubFrame.open && kind !== HubFrame.data && kind !== HubFrame.close) return undefined;
  const channel = data.toString('latin1', 1, 1 + HUB_CHANNEL_CHARS);
  if (!/^[A-Za-z0-9_-]{22}$/.test(channel)) return undefined;
  return { kind, channel, payload: data.subarray(1 + HUB_CHANNEL_CHARS) };
}

/** What the relay reads of patient traffic, for tests and audits of the relay itself: direction, hospital and the bytes. */
export type PatientTap = (direction: 'to-hospital' | 'to-patient', hospital: string, bytes: Buffer) => void;

/** Options of the patient router. */
export interface PatientChannelsOptions {
  registry: Registry;
  log: Logger;
  maxMessage?: number;
  maxHubBuffer?: number;
  tap?: PatientTap;
}

interface PatientEnd {
  ws: WebSocket;
  hospital: string;
}

/**
 * The relay's only patient state: live sockets. A patient socket is keyed by its channel (a newer socket on the same
 * channel replaces the older); a hospital has one hub socket per relay node. Everything between them is opaque bytes.
 */
export class PatientChannels {
  private readonly hubs = new Map<string, WebSocket>();
  private readonly hubCerts = new Map<string, X509Certificate>();
  private readonly patients = new Map<string, PatientEnd>();
  private readonly maxMessage: number;
  private readonly maxHubBuffer: number;
  readonly connections: Gauge;
  readonly bytes: Counter;
  readonly refused: Counter;

  constructor(private readonly o: PatientChannelsOptions) {
    this.maxMessage = o.maxMessage ?? DEFAULT_MAX_PATIENT_MESSAGE;
    this.maxHubBuffer = o.maxHubBuffer ?? DEFAULT_MAX_HUB_BUFFER;
    this.connections = new Gauge({ name: 'hie_relay_patient_connections', help: 'Patient connections open', registers: [o.registry] });
    this.bytes = new Counter({
      name: 'hie_relay_patient_bytes_total',
      help: 'Patient channel bytes routed, by direction (to-hospital, to-patient)',
      labelNames: ['direction'],
      registers: [o.registry],
    });
    this.refused = new Counter({
      name: 'hie_relay_patient_refused_total',
      help: 'Patient connections refused before the upgrade, by error code',
      labelNames: ['code'],
      registers: [o.registry],
    });
  }

  /** Largest patient message (the WebSocket maxPayload of patient sockets). */
  get maxPayload(): number {
    return this.maxMessage;
  }

  /** True when `hospital` has a hub open on this node. */
  online(hospital: string): boolean {
    return this.hubs.has(hospital);
  }

  /** Patient sockets open now. */
  get size(): number {
    return this.patients.size;
  }

  /** The verified certificate of `hospital`'s hub on this node, if one is open. */
  hubCertificate(hospital: string): X509Certificate | undefined {
    return this.hubCerts.get(hospital);
  }

  /** Takes the hub socket of `hospital` (verified with `cert`); a newer hub replaces the older. */
  acceptHub(ws: WebSocket, hospital: string, cert: X509Certificate): void {
    this.hubs.get(hospital)?.close(1000, 'replaced by a newer patient hub');
    this.hubs.set(hospital, ws);
    this.hubCerts.set(hospital, cert);
    ws.on('message', (data: Buffer, isBinary: boolean) => this.fromHub(hospital, ws, data, isBinary));
    ws.on('close', () => {
      if (this.hubs.get(hospital) !== ws) return;
      this.hubs.delete(hospital);
      this.hubCerts.delete(hospital);
      for (const end of this.patients.values()) if (end.hospital === hospital) end.ws.close(1012, 'hospital went offline');
    });
    ws.on('error', () => ws.terminate());
  }

  /** Takes an admitted patient socket and tells the hospital a channel opened. */
  acceptPatient(ws: WebSocket, hospital: string, channel: string): void {
    const hub = this.hubs.get(hospital);
    if (!hub) return void ws.close(1013, 'hospital offline');
    const prev = this.patients.get(channel);
    if (prev) {
      this.patients.delete(channel);
      prev.ws.close(1000, 'replaced by a newer connection');
    }
    this.patients.set(channel, { ws, hospital });
    this.connections.inc();
    hub.send(hubFrame(HubFrame.open, channel));
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) return void ws.close(1003, 'binary frames only');
      const h = this.hubs.get(hospital);
      if (!h) return void ws.close(1012, 'hospital went offline');
      if (h.bufferedAmount > this.maxHubBuffer) return void ws.close(1013, 'hospital is behind; retry later');
      this.o.tap?.('to-hospital', hospital, data);
      this.bytes.inc({ direction: 'to-hospital' }, data.length);
      h.send(hubFrame(HubFrame.data, channel, data));
    });
    ws.on('close', () => {
      if (this.patients.get(channel)?.ws !== ws) return;
      this.patients.delete(channel);
      this.connections.dec();
      this.hubs.get(hospital)?.send(hubFrame(HubFrame.close, channel));
    });
    ws.on('error', () => ws.terminate());
  }

  private fromHub(hospital: string, hub: WebSocket, data: Buffer, isBinary: boolean): void {
    const frame = isBinary ? parseHubFrame(data) : undefined;
    if (!frame) return void hub.close(1002, 'malformed patient hub frame');
    const end = this.patients.get(frame.channel);
    // A channel of another hospital is treated as closed: a hub reaches only its own patients.
    if (!end || end.hospital !== hospital) {
      if (frame.kind !== HubFrame.close) hub.send(hubFrame(HubFrame.close, frame.channel));
      return;
    }
    if (frame.kind === HubFrame.close) return void end.ws.close(1000, 'closed by the hospital');
    if (frame.kind !== HubFrame.data) return;
    this.o.tap?.('to-patient', hospital, frame.payload);
    this.bytes.inc({ direction: 'to-patient' }, frame.payload.length);
    end.ws.send(frame.payload);
  }

  /** Closes every patient and hub socket (shutdown). */
  closeAll(): void {
    for (const end of this.patients.values()) end.ws.close(1001, 'relay shutting down');
    for (const hub of this.hubs.values()) hub.close(1001, 'relay shutting down');
  }
}
