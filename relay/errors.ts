/** Errors of the relay server; protocol and client errors live in relay/protocol/errors.ts. */
export { RelayError, ProtocolError, TransferAbortedError, type RelayErrorCode } from './protocol/errors.ts';
import { RelayError } from './protocol/errors.ts';

/** An invalid relay configuration; the message names the key and the problem. */
export class ConfigError extends RelayError {
  /** Dotted config keys at fault, e.g. `listen.port`. */
  readonly keys: string[];

  constructor(message: string, keys: string[]) {
    super('ERR_RELAY_CONFIG', message);
    this.keys = keys;
  }
}
