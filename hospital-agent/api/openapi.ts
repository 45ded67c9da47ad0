import { AGENT_ERRORS } from '../errors.ts';
import { REVOCATION_REASONS } from '../../ledger/index.ts';

const error = { $ref: '#/components/schemas/Error' };
const errors = (...codes: Array<keyof typeof AGENT_ERRORS>) =>
  Object.fromEntries(
    [...new Set(codes.map((c) => AGENT_ERRORS[c].status))].map((status) => [
      String(status),
      { description: codes.filter((c) => AGENT_ERRORS[c].status === status).join(', '), content: { 'application/json': { schema: error } } },
    ]),
  );
const json = (schema: object) => ({ content: { 'application/json': { schema } } });
const idParam = (name: string, description: string) => ({ name, in: 'path', required: true, schema: { type: 'string' }, description });

/** The OpenAPI 3.1 document of the local API, served at /openapi.json. */
export function buildOpenApi(agentId: string): Record<string, unknown> {
  return {
    openapi: '3.1.0',
    info: {
      title: `HIE hospital agent (${agentId})`,
      version: '1',
      description:
        'Local API of the on-premise agent. Every /v1 route needs `Authorization: Bearer <token>`. Errors are JSON `{error: {code, message, requestId, detail?}}`, or a FHIR OperationOutcome for problems in a FHIR resource (and for any error when Accept names application/fhir+json); the codes are listed under x-error-codes.',
    },
    'x-error-codes': Object.entries(AGENT_ERRORS).map(([code, v]) => ({ code, status: v.status, description: v.description })),
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: {
        OperationOutcome: {
          type: 'object',
          description:
            'FHIR R4 OperationOutcome: errors about a FHIR resource, or any error when Accept names application/fhir+json. The agent code is in issue[].details.coding (system urn:hie:agent-error), the request id in the extension urn:hie:request-id.',
          required: ['resourceType', 'issue'],
          properties: {
            resourceType: { const: 'OperationOutcome' },
            extension: { type: 'array', items: { type: 'object' } },
            issue: {
              type: 'array',
              items: {
                type: 'object',
                required: ['severity', 'code', 'details'],
                properties: {
                  severity: { type: 'string' },
                  code: { type: 'string' },
                  details: {
                    type: 'object',
                    properties: {
                      coding: {
                        type: 'array',
                        items: {
                          type: 'object',
                          properties: { system: { const: 'urn:hie:agent-error' }, code: { type: 'string', enum: Object.keys(AGENT_ERRORS) } },
                        },
                      },
                      text: { type: 'string' },
                    },
                  },
                  expression: { type: 'array', items: { type: 'string' }, description: 'FHIRPath location of the problem' },
                },
              },
            },
          },
        },
        Error: {
          type: 'object',
          required: ['error'],
          properties: {
            error: {
              type: 'object',
              required: ['code', 'message', 'requestId'],
              properties: {
                code: { type: 'string', enum: Object.keys(AGENT_ERRORS) },
                message: { type: 'string' },
                requestId: { type: 'string' },
                detail: { type: 'object' },
              },
            },
          },
        },
        ConsentRequest: {
          type: 'object',
          required: ['patientId', 'validUntil'],
          properties: {
            patientId: { type: 'string', description: 'Local patient identifier; stored and logged only as an HMAC' },
            grantee: { type: 'string', description: 'Recipient hospital id' },
            grantees: { type: 'array', items: { type: 'string' } },
            purposes: { type: 'array', items: { type: 'string' }, description: 'HL7 PurposeOfUse codes (default TREAT)' },
            scope: {
              type: 'array',
              items: { type: 'string' },
              description: "FHIR resource types, ImagingStudy, Binary, or '*' (default; never sensitive data)",
            },
            categories: {
              type: 'array',
              items: { type: 'string', pattern: '^[A-Za-z][A-Za-z0-9+.-]*:[^|\\s]+\\|\\S+$' },
              description:
                "Data categories as 'system|code' (matched against each resource's category, type and code): when given, every resource but the Patient must carry one",
            },
            labels: {
              type: 'array',
              items: { type: 'string' },
              description:
                "Sensitive security labels the consent releases, as 'system|code' or a bare code (R, V: v3-Confidentiality; PSY, HIV, ETH, SUD...: v3-ActCode); data so labelled goes only under a consent naming every one of its labels",
            },
            validFrom: { type: 'string', description: 'RFC 3339 / FHIR dateTime (a partial date starts at its first millisecond, UTC)' },
            validUntil: { type: 'string', description: 'RFC 3339 / FHIR dateTime (a partial date ends at its last millisecond, UTC)' },
          },
          description: 'Or a FHIR R4 Consent resource (application/fhir+json).',
        },
        Consent: {
          type: 'object',
          properties: {
            id: { type: 'string' },
            patientHash: { type: 'string' },
            grantees: { type: 'array', items: { type: 'string' } },
            purposes: { type: 'array', items: { type: 'string' } },
            scope: { type: 'array', items: { type: 'string' } },
            categories: { type: 'array', items: { type: 'string' } },
            labels: { type: 'array', items: { type: 'string' } },
            validFrom: { type: 'string' },
            validUntil: { type: 'string' },
            grantedAt: { type: 'string' },
            revokedAt: { type: 'string' },
            revocationReason: { type: 'string', enum: [...REVOCATION_REASONS] },
          },
        },
        Exchange: {
          type: 'object',
          properties: {
            id: { type: 'string' },
            to: { type: 'string' },
            status: { type: 'string', enum: ['queued', 'sending', 'delivered', 'failed'] },
            bytes: { type: 'integer' },
            attempts: { type: 'integer' },
            failure: { type: 'object' },
            receipt: { type: 'object', description: 'the signed receipt as the recipient signed it (hashes base64url)' },
            contentSha256: { type: 'string', description: 'SHA-256 of the payload, lowercase hex (as sha256sum prints it)' },
            receiptContentSha256: { type: 'string', description: "the receipt's content hash as lowercase hex" },
          },
        },
      },
    },
    security: [{ bearer: [] }],
    paths: {
      '/healthz': {
        get: {
          security: [],
          summary: 'Liveness, relay connection state and the number of unfinished outgoing exchanges (outbox)',
          responses: { 200: { description: 'ok' } },
        },
      },
      '/metrics': { get: { security: [], summary: 'Prometheus metrics', responses: { 200: { description: 'text exposition format' } } } },
      '/v1/consents': {
        post: {
          summary: 'Grant a consent (own JSON form or FHIR R4 Consent)',
          requestBody: json({ $ref: '#/components/schemas/ConsentRequest' }),
          responses: {
            201: { description: 'granted', ...json({ $ref: '#/components/schemas/Consent' }) },
            ...errors('ERR_BAD_REQUEST', 'ERR_INVALID_FHIR', 'ERR_UNSUPPORTED_MEDIA_TYPE', 'ERR_UNAUTHORIZED'),
          },
        },
        get: { summary: 'List consents', responses: { 200: { description: 'consents' } } },
      },
      '/v1/consents/{id}': {
        get: {
          summary: 'One consent; ?format=fhir returns a FHIR Consent',
          parameters: [idParam('id', 'consent id')],
          responses: { 200: { description: 'consent' }, ...errors('ERR_NOT_FOUND') },
        },
        delete: {
          summary: 'Revoke a consent (?reason=patient-request|expired|superseded|entered-in-error|legal)',
          parameters: [idParam('id', 'consent id')],
          responses: { 200: { description: 'revoked' }, ...errors('ERR_NOT_FOUND', 'ERR_CONFLICT') },
        },
      },
      '/v1/exchanges': {
        post: {
          summary: 'Send a payload (streamed body: a FHIR Bundle as application/fhir+json, or any binary such as application/dicom)',
          parameters: [
            { name: 'Hie-Recipient', in: 'header', required: true, schema: { type: 'string' } },
            { name: 'Hie-Patient-Id', in: 'header', required: true, schema: { type: 'string' }, description: 'never stored in the clear' },
            { name: 'Hie-Consent-Id', in: 'header', required: true, schema: { type: 'string' } },
            { name: 'Hie-Purpose', in: 'header', required: false, schema: { type: 'string', default: 'TREAT' } },
            { name: 'Idempotency-Key', in: 'header', required: false, schema: { type: 'string' } },
            {
              name: 'Hie-Request-Id',
              in: 'header',
              required: false,
              schema: { type: 'string' },
              description: 'the incoming records request this exchange answers',
            },
          ],
          requestBody: { required: true, content: { 'application/fhir+json': {}, 'application/dicom': {}, 'application/octet-stream': {} } },
          responses: {
            202: { description: 'accepted and queued', ...json({ $ref: '#/components/schemas/Exchange' }) },
            200: { description: 'the same Idempotency-Key was used before: the earlier exchange' },
            ...errors(
              'ERR_BAD_REQUEST',
              'ERR_INVALID_FHIR',
              'ERR_CONSENT_MISSING',
              'ERR_CONSENT_REVOKED',
              'ERR_CONSENT_EXPIRED',
              'ERR_CONSENT_SCOPE',
              'ERR_CONSENT_SENSITIVE',
              'ERR_CONFLICT',
              'ERR_PAYLOAD_TOO_LARGE',
              'ERR_UNSUPPORTED_MEDIA_TYPE',
            ),
            422: {
              description:
                'ERR_FHIR_INVALID, ERR_FHIR_REFERENCE_UNRESOLVED, ERR_FHIR_PATIENT_MISMATCH, ERR_FHIR_PATIENT_MULTIPLE, ERR_FHIR_PATIENT_UNRESOLVED, ERR_FHIR_PATIENT_MISSING (a FHIR OperationOutcome, one issue per problem); ERR_DICOM_PATIENT_MISMATCH, ERR_DICOM_INVALID, ERR_UNKNOWN_RECIPIENT (JSON error, or an OperationOutcome when Accept names FHIR)',
              content: { 'application/fhir+json': { schema: { $ref: '#/components/schemas/OperationOutcome' } }, 'application/json': { schema: error } },
            },
          },
        },
        get: { summary: 'List exchanges (?status=&limit=)', responses: { 200: { description: 'exchanges' } } },
      },
      '/v1/exchanges/{id}': {
        get: {
          summary: 'Status of an exchange: queued, sending, delivered (with the verified receipt) or failed (with the reason)',
          parameters: [idParam('id', 'exchange id')],
          responses: { 200: { description: 'exchange' }, ...errors('ERR_NOT_FOUND') },
        },
        delete: {
          summary:
            'Cancel an exchange not yet released to its recipient (queued or waiting to be retried): it is never sent, an exchange.cancelled ledger entry records it, and it ends failed with code ERR_EXCHANGE_CANCELLED. 409 ERR_CONFLICT with detail.status (sending, released, delivered, failed) when it can no longer be cancelled',
          parameters: [idParam('id', 'exchange id')],
          responses: { 200: { description: 'cancelled: the exchange' }, ...errors('ERR_NOT_FOUND', 'ERR_CONFLICT') },
        },
      },
      '/v1/requests': {
        post: {
          summary:
            "Ask another hospital for a patient's records: {holder, patientId, purpose?, scope?}. The patient id travels only inside a JWE to the holder, signed by this agent; the holder checks its own consents and answers with an exchange",
          requestBody: json({
            type: 'object',
            required: ['holder', 'patientId'],
            properties: {
              holder: { type: 'string' },
              patientId: { type: 'string' },
              purpose: { type: 'string' },
              scope: { type: 'array', items: { type: 'string' } },
            },
          }),
          responses: { 202: { description: 'sent' }, ...errors('ERR_BAD_REQUEST', 'ERR_RELAY_UNAVAILABLE') },
        },
        get: {
          summary:
            'Requests this hospital sent (outgoing: sent, accepted, refused with a code) and received (incoming: accepted with the patient id and matching consent for the EHR, answered, refused); ?direction=',
          responses: { 200: { description: 'requests' } },
        },
      },
      '/v1/requests/{id}': {
        get: { summary: 'One request', parameters: [idParam('id', 'request id')], responses: { 200: { description: 'request' }, ...errors('ERR_NOT_FOUND') } },
      },
      '/v1/inbox': { get: { summary: 'Verified inbound exchanges (?unacked=true)', responses: { 200: { description: 'items' } } } },
      '/v1/inbox/{id}': {
        get: {
          summary: 'Metadata of one item: sender, content type, size, hash, verified signature',
          parameters: [idParam('id', 'exchange id')],
          responses: { 200: { description: 'item' }, ...errors('ERR_NOT_FOUND') },
        },
        delete: {
          summary: 'Delete an item and its content',
          parameters: [idParam('id', 'exchange id')],
          responses: { 204: { description: 'deleted' }, ...errors('ERR_NOT_FOUND') },
        },
      },
      '/v1/inbox/{id}/content': {
        get: {
          summary: 'The content, streamed',
          parameters: [idParam('id', 'exchange id')],
          responses: { 200: { description: 'content' }, ...errors('ERR_NOT_FOUND') },
        },
      },
      '/v1/inbox/{id}/ack': {
        post: {
          summary: 'Mark an item as taken over by the EHR',
          parameters: [idParam('id', 'exchange id')],
          responses: { 200: { description: 'acknowledged' }, ...errors('ERR_NOT_FOUND') },
        },
      },
      '/v1/ledger/status': { get: { summary: 'Feeds, heads, replication state and equivocation evidence', responses: { 200: { description: 'status' } } } },
      '/v1/ledger/verify': { get: { summary: 'Verify the whole local ledger (?grace=seconds)', responses: { 200: { description: 'result with findings' } } } },
      '/v1/ledger/settlement': {
        get: {
          summary: 'What this hospital owes and is owed (?period=YYYY-MM)',
          responses: { 200: { description: 'statement' }, ...errors('ERR_BAD_REQUEST') },
        },
      },
      '/v1/audit/consent-decisions': {
        get: {
          summary:
            "The release gate's consent decisions (permit and deny) from the agent's local, bounded decision log, oldest first (?since= FHIR dateTime, ?limit= 1-1000); ?format=balp: a FHIR Bundle of IHE BALP AuthZconsent AuditEvents (patients as keyed hashes only)",
          responses: { 200: { description: 'decisions (JSON) or a FHIR Bundle (application/fhir+json)' }, ...errors('ERR_BAD_REQUEST') },
        },
      },
      '/v1/federation': {
        get: {
          summary:
            'The CRL and the member directory this agent holds (each the newest it verified, from the relay, the CRL file or its data directory; null when none), and whether its own certificate is revoked',
          responses: {
            200: {
              description:
                '{certificate: {serial, revoked}, crl: {crlNumber, thisUpdate, nextUpdate, expired, revoked} | null, directory: {sequence, issuedAt, signer, members} | null}',
            },
          },
        },
      },
      '/v1/ledger/proofs/{kind}/{id}': {
        get: {
          summary: 'A self-contained proof file for an auditor (docs/verification.md): the story of an exchange or a consent, against witnessed checkpoints',
          parameters: [idParam('kind', 'exchange or consent'), idParam('id', 'exchange or consent id')],
          responses: {
            200: {
              description: "the proof file (format hie-ledger-proof); header Hie-Proof-Verified says whether it passes under this agent's witness policy",
            },
            ...errors('ERR_BAD_REQUEST', 'ERR_NOT_FOUND'),
          },
        },
      },
      '/v1/certificates': {
        post: {
          summary:
            'Issue a SMART Health Card (docs/certificates.md) for one purpose (sick-leave, diagnosis, vaccination, lab-result) from a FHIR Bundle: {purpose, bundle, period?: {start, end}, validForSeconds?}; logged as a certificate.issued ledger entry (card hash, kid, rid, nbf; no PHI)',
          responses: {
            201: { description: '{jws, hash, kid, rid, iss, nbf, qr: [shc:/...], statements, ledger: {feed, seq, hash, ts}}' },
            ...errors('ERR_BAD_REQUEST', 'ERR_CERTIFICATE_BUNDLE', 'ERR_CERTIFICATES_DISABLED'),
          },
        },
      },
      '/fhir/AuditEvent': {
        get: {
          summary:
            'The ledger as FHIR R4 AuditEvents (IHE BALP patterns), searched as IHE ITI-81 does: date (eq/ge/gt/le/lt, repeatable), patient (the clear id, hashed by the agent and never kept; links name it as patient.identifier=urn:hie:patient-hmac|<hash>), entity (exchange id, consent id, claim id, prescription id or feed/seq), agent (hospital id), outcome, type, subtype (ledger entry type), _count (1-1000), next links. Needs a compliance (or admin) token; answers application/fhir+json searchset Bundles, errors as OperationOutcomes',
          responses: {
            200: { description: 'searchset Bundle', content: { 'application/fhir+json': { schema: { type: 'object' } } } },
            ...errors('ERR_BAD_REQUEST', 'ERR_UNAUTHORIZED', 'ERR_FORBIDDEN_ROLE'),
          },
        },
      },
      '/fhir/Consent': {
        get: {
          summary:
            "This hospital's consents of one patient (?patient=<clear id> or ?patient.identifier=urn:hie:patient-hmac|<hash>) as a searchset of FHIR R4 Consents; revoked ones inactive. Needs a compliance (or admin) token",
          responses: {
            200: { description: 'searchset Bundle', content: { 'application/fhir+json': { schema: { type: 'object' } } } },
            ...errors('ERR_BAD_REQUEST', 'ERR_UNAUTHORIZED', 'ERR_FORBIDDEN_ROLE'),
          },
        },
      },
      '/v1/prescriptions': {
        post: {
          summary:
            "Issue an e-prescription (E-Rezept's $activate; docs/pharmacies.md): {patientId, medicationRequest (FHIR R4, validated), qr?}. The agent signs the MedicationRequest and keeps the Task as ready; the answer carries the 256-bit accessCode and the token for the patient (text, and as a QR code PNG data URL with qr: true) once: only the code's hash is kept",
          requestBody: json({
            type: 'object',
            required: ['patientId', 'medicationRequest'],
            properties: { patientId: { type: 'string' }, medicationRequest: { type: 'object' }, qr: { type: 'boolean' } },
          }),
          responses: {
            201: { description: 'the Task (ready) with accessCode, token and qr' },
            ...errors('ERR_BAD_REQUEST', 'ERR_INVALID_FHIR', 'ERR_FHIR_INVALID'),
          },
        },
        get: {
          summary: 'Prescriptions this agent issued, newest first (?status=ready|in-progress|completed|cancelled)',
          responses: { 200: { description: 'prescriptions' }, ...errors('ERR_BAD_REQUEST') },
        },
      },
      '/v1/prescriptions/{id}': {
        get: {
          summary: "One prescription's Task: status, pharmacy, signed dispense receipt (never the access code, the secret or the patient)",
          parameters: [idParam('id', 'prescription id')],
          responses: { 200: { description: 'the Task' }, ...errors('ERR_NOT_FOUND') },
        },
      },
      '/v1/prescriptions/{id}/abort': {
        post: {
          summary: '$abort: cancel a ready prescription, by the prescriber ({}) or by the patient ({accessCode})',
          parameters: [idParam('id', 'prescription id')],
          requestBody: json({ type: 'object', properties: { accessCode: { type: 'string' } } }),
          responses: {
            200: { description: 'the Task, cancelled' },
            ...errors('ERR_NOT_FOUND', 'ERR_RX_FORBIDDEN', 'ERR_RX_IN_PROGRESS', 'ERR_RX_CANCELLED', 'ERR_RX_WRONG_STATE'),
          },
        },
      },
      '/v1/dispensing': {
        post: {
          summary:
            "$accept at the prescriber's agent, as a pharmacy: {token} (the patient's token) or {prescriber, id, accessCode}. Exactly one pharmacy wins a Task; the agent keeps the secret that binds its later steps and answers the verified MedicationRequest",
          requestBody: json({
            type: 'object',
            properties: { token: { type: 'string' }, prescriber: { type: 'string' }, id: { type: 'string' }, accessCode: { type: 'string' } },
          }),
          responses: {
            200: { description: 'held: in-progress, with the MedicationRequest' },
            ...errors(
              'ERR_BAD_REQUEST',
              'ERR_NOT_FOUND',
              'ERR_RX_FORBIDDEN',
              'ERR_RX_NOT_PHARMACY',
              'ERR_RX_IN_PROGRESS',
              'ERR_RX_CANCELLED',
              'ERR_RX_WRONG_STATE',
              'ERR_RELAY_UNAVAILABLE',
            ),
          },
        },
        get: {
          summary: 'Prescriptions this pharmacy accepted (in-progress, rejected, completed with the receipt)',
          responses: { 200: { description: 'prescriptions' } },
        },
      },
      '/v1/dispensing/{prescriber}/{id}': {
        get: {
          summary: 'One prescription this pharmacy holds',
          parameters: [idParam('prescriber', 'prescriber member id'), idParam('id', 'prescription id')],
          responses: { 200: { description: 'held prescription' }, ...errors('ERR_NOT_FOUND') },
        },
      },
      '/v1/dispensing/{prescriber}/{id}/reject': {
        post: {
          summary: '$reject: hand a held prescription back (ready again at the prescriber)',
          parameters: [idParam('prescriber', 'prescriber member id'), idParam('id', 'prescription id')],
          responses: {
            200: { description: 'rejected' },
            ...errors('ERR_NOT_FOUND', 'ERR_RX_FORBIDDEN', 'ERR_RX_WRONG_STATE', 'ERR_RX_CANCELLED', 'ERR_RELAY_UNAVAILABLE'),
          },
        },
      },
      '/v1/dispensing/{prescriber}/{id}/close': {
        post: {
          summary:
            "$close with {medicationDispense} (FHIR R4): completed; answers the prescriber's signed dispense receipt (compact JWS) and what it says. A second close is 412",
          parameters: [idParam('prescriber', 'prescriber member id'), idParam('id', 'prescription id')],
          requestBody: json({ type: 'object', required: ['medicationDispense'], properties: { medicationDispense: { type: 'object' } } }),
          responses: {
            200: { description: 'completed, with receipt and dispensed' },
            ...errors(
              'ERR_NOT_FOUND',
              'ERR_INVALID_FHIR',
              'ERR_FHIR_INVALID',
              'ERR_RX_FORBIDDEN',
              'ERR_RX_WRONG_STATE',
              'ERR_RX_CANCELLED',
              'ERR_RELAY_UNAVAILABLE',
            ),
          },
        },
      },
      '/v1/claims': {
        post: {
          summary:
            "Submit a FHIR R4 Claim with its Coverage to an insurer member (docs/insurers.md): {insurer, patientId, consentId?, claim, coverage}. Needs a consent of the patient for purpose HPAYMT to the insurer; 202 filed and sent, 200 the claim first submitted under the same Claim.identifier. With `Prefer: wait=N` (RFC 7240, N <= 30) the answer comes once the insurer's first signed response is filed (status queued or final), or after N seconds (status sent). FHIR problems answer as an OperationOutcome",
          requestBody: json({
            type: 'object',
            required: ['insurer', 'patientId', 'claim', 'coverage'],
            properties: {
              insurer: { type: 'string' },
              patientId: { type: 'string' },
              consentId: { type: 'string' },
              claim: { type: 'object', description: 'FHIR R4 Claim (identifier, total, item, insurance)' },
              coverage: { type: 'object', description: 'FHIR R4 Coverage' },
            },
          }),
          responses: {
            202: { description: 'the claim, sent' },
            200: { description: 'the claim first submitted under this Claim.identifier' },
            ...errors(
              'ERR_BAD_REQUEST',
              'ERR_INVALID_FHIR',
              'ERR_FHIR_INVALID',
              'ERR_CLAIM_INVALID',
              'ERR_MEMBER_NOT_INSURER',
              'ERR_MEMBER_SUSPENDED',
              'ERR_MEMBER_REVOKED',
              'ERR_CONSENT_MISSING',
              'ERR_CONSENT_SCOPE',
              'ERR_CONSENT_EXPIRED',
              'ERR_CONSENT_REVOKED',
              'ERR_RELAY_UNAVAILABLE',
            ),
          },
        },
        get: {
          summary:
            'Claims this member submitted (outgoing: sent, then the latest outcome: queued, complete, partial, error) and, as an insurer, received (incoming: what its claims system answers); ?direction=',
          responses: { 200: { description: '{claims: [...]}' } },
        },
      },
      '/v1/claims/{id}': {
        get: {
          summary:
            "One claim: its Claim and Coverage, status, amounts in minor units, and the signed ClaimResponses (compact JWS, EdDSA, typ hie-claimresponse+json), with an ETag. A long poll: with `If-None-Match` naming the ETag held and `Prefer: wait=N` (RFC 7240, N <= 30), the answer comes at the claim's next change (200, a new ETag) or after N seconds (304)",
          parameters: [
            idParam('id', 'claim id'),
            { name: 'If-None-Match', in: 'header', required: false, schema: { type: 'string' }, description: 'the ETag the client holds' },
            {
              name: 'Prefer',
              in: 'header',
              required: false,
              schema: { type: 'string' },
              description: 'wait=N: hold the answer up to N seconds (at most 30) for a change',
            },
          ],
          responses: { 200: { description: 'claim' }, 304: { description: 'unchanged (the ETag held is current)' }, ...errors('ERR_NOT_FOUND') },
        },
      },
      '/v1/claims/{id}/response': {
        post: {
          summary:
            "Insurer: the claims system's adjudication of a pended claim, {outcome: complete|partial|error, paid? (minor units; complete defaults to the total), disposition?}; signed, logged with its payment, and pushed to the hospital",
          parameters: [idParam('id', 'claim id')],
          requestBody: json({
            type: 'object',
            required: ['outcome'],
            properties: { outcome: { type: 'string', enum: ['complete', 'partial', 'error'] }, paid: { type: 'integer' }, disposition: { type: 'string' } },
          }),
          responses: { 200: { description: 'the claim, adjudicated' }, ...errors('ERR_BAD_REQUEST', 'ERR_NOT_FOUND', 'ERR_CLAIM_STATE') },
        },
      },
      '/v1/eligibility': {
        post: {
          summary:
            'Ask an insurer member whether a Coverage is in force before a claim (docs/insurers.md): {insurer, patientId, consentId?, request, coverage}, request a FHIR R4 CoverageEligibilityRequest. Needs a consent for purpose HPAYMT with scope CoverageEligibilityRequest and Coverage; 202 sent, 200 the request first sent under the same identifier',
          requestBody: json({
            type: 'object',
            required: ['insurer', 'patientId', 'request', 'coverage'],
            properties: {
              insurer: { type: 'string' },
              patientId: { type: 'string' },
              consentId: { type: 'string' },
              request: { type: 'object', description: 'FHIR R4 CoverageEligibilityRequest (identifier, insurance)' },
              coverage: { type: 'object', description: 'FHIR R4 Coverage' },
            },
          }),
          responses: {
            202: { description: 'the request, sent' },
            200: { description: 'the request first sent under this identifier' },
            ...errors(
              'ERR_BAD_REQUEST',
              'ERR_INVALID_FHIR',
              'ERR_FHIR_INVALID',
              'ERR_CLAIM_INVALID',
              'ERR_MEMBER_NOT_INSURER',
              'ERR_MEMBER_SUSPENDED',
              'ERR_MEMBER_REVOKED',
              'ERR_CONSENT_MISSING',
              'ERR_CONSENT_SCOPE',
              'ERR_CONSENT_EXPIRED',
              'ERR_CONSENT_REVOKED',
              'ERR_RELAY_UNAVAILABLE',
            ),
          },
        },
        get: {
          summary: 'Eligibility requests this member sent (outgoing) and, as an insurer, received (incoming), with their latest outcome; ?direction=',
          responses: { 200: { description: '{requests: [...]}' } },
        },
      },
      '/v1/eligibility/{id}': {
        get: {
          summary:
            'One eligibility request: its CoverageEligibilityRequest and Coverage, status, and the signed CoverageEligibilityResponses (compact JWS, EdDSA, typ hie-coverageeligibilityresponse+json)',
          parameters: [idParam('id', 'eligibility request id')],
          responses: { 200: { description: 'eligibility request' }, ...errors('ERR_NOT_FOUND') },
        },
      },
      '/v1/eligibility/{id}/response': {
        post: {
          summary:
            "Insurer: the claims system's answer, {outcome: queued|complete|partial|error, inforce?, disposition?}: a final outcome at once, or queued (pended, once) and a final one later; signed, logged and pushed to the hospital",
          parameters: [idParam('id', 'eligibility request id')],
          requestBody: json({
            type: 'object',
            required: ['outcome'],
            properties: {
              outcome: { type: 'string', enum: ['queued', 'complete', 'partial', 'error'] },
              inforce: { type: 'boolean' },
              disposition: { type: 'string' },
            },
          }),
          responses: { 200: { description: 'the request, answered' }, ...errors('ERR_BAD_REQUEST', 'ERR_NOT_FOUND', 'ERR_CLAIM_STATE') },
        },
      },
      '/v1/patients/enrolments': {
        post: {
          summary:
            'A one-time enrolment code for a patient (patients.app.enabled; docs/patients.md): {patientId}; answers the link, its QR code (qrPng base64, qrSvg) and expiresAt',
          requestBody: json({ type: 'object', required: ['patientId'], properties: { patientId: { type: 'string' } } }),
          responses: {
            201: { description: '{link, expiresAt, qrPng, qrSvg}' },
            ...errors('ERR_BAD_REQUEST', 'ERR_UNSUPPORTED_MEDIA_TYPE', 'ERR_NOT_FOUND'),
          },
        },
      },
      '/v1/patients/consent-requests': {
        post: {
          summary: 'Ask the patient for a consent they sign in the app (the body of POST /v1/consents); pending until they answer',
          requestBody: json({ $ref: '#/components/schemas/ConsentRequest' }),
          responses: { 201: { description: 'the request (status pending)' }, ...errors('ERR_BAD_REQUEST', 'ERR_UNSUPPORTED_MEDIA_TYPE', 'ERR_NOT_FOUND') },
        },
        get: {
          summary: "One patient's consent requests, newest first (status pending, approved or refused)",
          parameters: [{ name: 'Hie-Patient-Id', in: 'header', required: true, schema: { type: 'string' } }],
          responses: { 200: { description: '{requests: [...]}' }, ...errors('ERR_BAD_REQUEST', 'ERR_NOT_FOUND') },
        },
      },
      '/v1/patients/consent-requests/{id}': {
        get: {
          summary: 'One consent request and its status',
          parameters: [idParam('id', 'request id (the consent id once approved)')],
          responses: { 200: { description: 'request' }, ...errors('ERR_NOT_FOUND') },
        },
      },
      '/v1/patients/records': {
        post: {
          summary:
            "The EHR's copy of a patient's own records (a FHIR R4 Bundle, validated, about that patient only, at most 768 KiB): kept for their enrolled device and sent to it end to end encrypted; each copy a device gets is a patient.records ledger entry (hashes only) and a row of their access log",
          parameters: [{ name: 'Hie-Patient-Id', in: 'header', required: true, schema: { type: 'string' } }],
          requestBody: { required: true, content: { 'application/fhir+json': { schema: { type: 'object' } } } },
          responses: {
            201: { description: '{sha256, entries, receivedAt, delivered}: delivered is how many open sessions got it at once' },
            ...errors(
              'ERR_BAD_REQUEST',
              'ERR_UNSUPPORTED_MEDIA_TYPE',
              'ERR_PAYLOAD_TOO_LARGE',
              'ERR_INVALID_FHIR',
              'ERR_FHIR_INVALID',
              'ERR_FHIR_PATIENT_MISMATCH',
              'ERR_CONFLICT',
              'ERR_NOT_FOUND',
            ),
          },
        },
      },
      '/v1/patients/access-log': {
        get: {
          summary: "The patient's own access log: every release of their records (to whom, when, under which consent, receipt, ledger position)",
          parameters: [{ name: 'Hie-Patient-Id', in: 'header', required: true, schema: { type: 'string' } }],
          responses: { 200: { description: '{releases: [...]}' }, ...errors('ERR_BAD_REQUEST', 'ERR_NOT_FOUND') },
        },
      },
    },
  };
}
