/**
 * What the parts of one exchange engine share: its ports, its resolved
 * settings, its clock and events, and the little state more than one part
 * reads (the header hash each send put on the wire).
 */
import type { EventEmitter } from 'node:events';
import type { ExchangeRecord } from '../store/exchanges.ts';
import type { EngineOptions, EngineSettings } from './options.ts';

/** Events of the engine (metrics and tests listen). */
export interface EngineEvents {
  /** A batch envelope is on its way with this many exchanges. */
  batch: [size: number];
  delivered: [record: ExchangeRecord];
  failed: [record: ExchangeRecord];
  /** Cancelled through the API before it was released (also final: status `failed`, code ERR_EXCHANGE_CANCELLED). */
  cancelled: [record: ExchangeRecord];
  retry: [record: ExchangeRecord, error: Error];
}

/** The ports the engine was given (its options without the settings). */
export type EnginePorts = Pick<EngineOptions, 'self' | 'store' | 'outbox' | 'consents' | 'peers' | 'ledger' | 'relay' | 'send' | 'sender' | 'logger'>;

/** Shared by the engine's parts; built once by the engine. */
export interface EngineContext {
  readonly ports: EnginePorts;
  readonly settings: EngineSettings;
  readonly events: EventEmitter<EngineEvents>;
  now(): Date;
  /** Header hash of each exchange's last complete send, until its receipt settles (the receipt must name it). */
  readonly sentHeaders: Map<string, string>;
}

/** The content hash as the ledger and receipts carry it (base64url of the hex SHA-256). */
export function b64(hex: string): string {
  return Buffer.from(hex, 'hex').toString('base64url');
}

/** True when the exchange is older than the engine keeps retrying. */
export function expired(ctx: EngineContext, record: ExchangeRecord): boolean {
  return ctx.now().getTime() - Date.parse(record.createdAt) > ctx.settings.maxAgeMs;
}
