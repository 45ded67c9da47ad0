import { createHash, randomUUID } from 'node:crypto';
import type { AppendResult, Ledger } from '../../../ledger/index.ts';
import type { Consent } from '../../../hospital-agent/consent/model.ts';
import type { ConsentService } from '../../../hospital-agent/services/consents.ts';
import type { ExchangeRecord, ExchangeStore } from '../../../hospital-agent/store/exchanges.ts';

/**
 * A small inline exchange to 'bravo' under a fresh consent for `patientId`,
 * whose release (`exchange.sent`) is in the ledger; the store is not told
 * (as after a crash between the two).
 */
export async function releasedExchange(
  store: ExchangeStore,
  ledger: Ledger,
  consents: ConsentService,
  patientId: string,
): Promise<{ record: ExchangeRecord; consent: Consent; logged: AppendResult }> {
  const consent = await consents.grant({
    patientId,
    grantees: ['bravo'],
    purposes: ['TREAT'],
    scope: ['*'],
    validUntil: new Date(Date.now() + 86_400_000).toISOString(),
  });
  const body = Buffer.from('{"resourceType":"Bundle","type":"collection"}');
  const sha = createHash('sha256').update(body).digest('hex');
  const { record } = await store.create(
    {
      id: randomUUID(),
      to: 'bravo',
      patientHash: consent.patientHash,
      consentId: consent.id,
      purpose: 'TREAT',
      contentType: 'application/fhir+json',
      scope: ['*'],
      bytes: body.length,
      contentSha256: sha,
    },
    undefined,
    { body },
  );
  const logged = await ledger.append({
    type: 'exchange.sent',
    body: {
      exchange: record.id,
      to: 'bravo',
      consent: consent.id,
      patient: consent.patientHash,
      purpose: 'TREAT',
      contentType: 'application/fhir+json',
      bytes: body.length,
      hash: Buffer.from(sha, 'hex').toString('base64url'),
    },
  });
  return { record, consent, logged };
}
