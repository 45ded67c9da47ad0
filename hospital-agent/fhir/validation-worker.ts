/**
 * A FHIR validation thread of {@link FhirValidationPool}: it indexes the R4
 * definitions once, then answers each Bundle it is sent, in order.
 */
import { parentPort } from 'node:worker_threads';
import { loadR4Definitions } from './definitions.ts';
import { answer, type ValidationJob } from './validation-pool.ts';

const port = parentPort;
if (port) {
  loadR4Definitions();
  port.on('message', (job: ValidationJob) => port.postMessage(answer(job)));
}
