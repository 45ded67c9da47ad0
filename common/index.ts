// What the parts share that is neither PKI (certs/) nor protocol (relay/protocol/).
export { createLogger, LOG_BUFFER_BYTES, LOG_FLUSH_MS, LOG_MAX_BUFFERED_BYTES, type LogDestination } from './log.ts';
export {
  ConfigError,
  configEnvVar,
  configLeaves,
  createConfigLoader,
  readConfigFile,
  type ConfigErrorCode,
  type ConfigLoader,
  type ConfigSpec,
  type LeafKind,
} from './config.ts';
export { writeAllSync, writevAll } from './write-all.ts';
export { moduleWorker } from './worker.ts';
