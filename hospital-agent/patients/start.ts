// One job: the patient party inside a running agent (`patients.app.enabled`): its store, key, service and a hub link to
// the relay that comes back after the relay drops it.
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Identity } from '../../certs/index.ts';
import type { Ledger } from '../../ledger/index.ts';
import type { AgentConfig } from '../config.ts';
import type { ConsentService } from '../services/consents.ts';
import { loadAgentPatientKey } from './agent-key.ts';
import { PatientHub } from './hub.ts';
import { PatientService } from './service.ts';
import { PatientStore } from './store.ts';
import type { FhirValidator } from '../fhir/validation-pool.ts';

/** Delays between hub reconnection attempts, in ms (the last repeats). */
const RECONNECT_MS = [1000, 2000, 5000, 10_000, 30_000];

/** The patient app's address: `patients.app.url`, or `https://RELAY/patient/` of the first relay URL. */
export function patientAppUrl(config: AgentConfig): string {
  if (config.patients.app.url) return config.patients.app.url;
  const relay = new URL(config.relay.urls[0] as string);
  return `https://${relay.host}/patient/`;
}

/** The running patient party of an agent. */
export interface RunningPatients {
  service: PatientService;
  store: PatientStore;
  /** Whether the hub link to the relay is open. */
  connected(): boolean;
  close(): Promise<void>;
}

/** Opens the patient store (`dataDir/patients`), loads the channel key and keeps a hub link to the first relay. */
export async function startPatients(o: {
  config: AgentConfig;
  identity: () => Identity;
  consents: ConsentService;
  ledger: Ledger;
  secret: Buffer;
  log: Logger;
  validator?: FhirValidator;
}): Promise<RunningPatients> {
  const { config } = o;
  const store = new PatientStore(join(config.dataDir, 'patients', 'db'));
  await store.open();
  const agentKey = await loadAgentPatientKey(join(config.dataDir, 'patients', 'channel-key.json'));
  const service = new PatientService({
    feed: config.id,
    identity: o.identity,
    store,
    consents: o.consents,
    ledger: o.ledger,
    secret: o.secret,
    identifierSystem: config.patients.identifierSystem,
    agentKey,
    appUrl: patientAppUrl(config),
    log: o.log,
    codeSeconds: config.patients.app.codeSeconds,
    ...(o.validator ? { validator: o.validator } : {}),
  });
  const relay = new URL(config.relay.urls[0] as string);
  let closed = false;
  let open = false;
  let attempt = 0;
  let timer: NodeJS.Timeout | undefined;
  const hub: PatientHub = new PatientHub({
    url: `wss://${relay.host}`,
    identity: o.identity,
    service,
    log: o.log,
    onClose: () => {
      open = false;
      schedule();
    },
  });
  const connect = async (): Promise<void> => {
    if (closed) return;
    try {
      await hub.connect();
      open = true;
      attempt = 0;
      o.log.info('patient hub connected');
    } catch (err) {
      o.log.warn({ msg: (err as Error).message }, 'patient hub connection failed; retrying');
      schedule();
    }
  };
  function schedule(): void {
    if (closed) return;
    const delay = RECONNECT_MS[Math.min(attempt++, RECONNECT_MS.length - 1)] as number;
    timer = setTimeout(() => void connect(), delay);
    timer.unref();
  }
  void connect();
  return {
    service,
    store,
    connected: () => open,
    close: async () => {
      closed = true;
      if (timer) clearTimeout(timer);
      hub.close();
      await store.close();
    },
  };
}
