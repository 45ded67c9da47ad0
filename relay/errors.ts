/** Errors of the relay server; protocol and client errors live in relay/protocol/errors.ts. */
export { RelayError, ProtocolError, TransferAbortedError, type RelayErrorCode } from './protocol/errors.ts';
/** An invalid relay configuration (code `ERR_RELAY_CONFIG`); the message names the key and the problem, `keys` the dotted keys. */
export { ConfigError } from '../common/index.ts';
