// Descriptions of config keys for the generated references (docs/reference/*-config.md), moved from the README tables.
// A key's `.describe()` text in its schema, when there is one, takes precedence. `default` overrides the default the schema gives (e.g. one computed at load time).

/** What the reference says about one config key. */
export interface ConfigNote {
  /** What the key does (Markdown, one paragraph). */
  readonly text: string;
  /** Shown as the default instead of the schema's (Markdown), when the schema has none or it needs words. */
  readonly default?: string;
}

/** Notes on the relay's config keys, by dotted key. */
export const RELAY_CONFIG_NOTES: Readonly<Record<string, ConfigNote>> = {
  'listen.host': { text: 'agent listener (HTTPS + WebSocket at `/v1/agent`)' },
  'listen.port': { text: 'agent listener (HTTPS + WebSocket at `/v1/agent`)' },
  'tls.cert': { text: 'relay certificate, its key, the federation CA' },
  'tls.key': { text: 'relay certificate, its key, the federation CA' },
  'tls.ca': { text: 'relay certificate, its key, the federation CA' },
  'tls.crl': { text: 'CRL file; polled every `tls.crlPollMs` (2000) and reloaded on SIGHUP' },
  'tls.crlPollMs': { text: 'how often the CRL file (`tls.crl`) is checked for changes (ms); it is also re-read on SIGHUP' },
  'tls.passphraseEnv': { text: "name of an env var holding the key's passphrase" },
  'directory.file': {
    text: 'the signed member directory (`hie-certs directory sign` writes `PKI/directory/directory.jws`); polled and re-read on SIGHUP, verified, handed with the CRL to every agent ([federation-directory.md](../federation-directory.md))',
  },
  'directory.pollMs': {
    text: 'the signed member directory (`hie-certs directory sign` writes `PKI/directory/directory.jws`); polled and re-read on SIGHUP, verified, handed with the CRL to every agent ([federation-directory.md](../federation-directory.md))',
  },
  'admin.enabled': { text: 'operator HTTP listener (plain HTTP: keep it on loopback or a private network)' },
  'admin.host': { text: 'operator HTTP listener (plain HTTP: keep it on loopback or a private network)' },
  'admin.port': { text: 'operator HTTP listener (plain HTTP: keep it on loopback or a private network)' },
  'certificates.enabled': {
    text: 'public HTTPS listener (relay certificate, no client certificate) for SMART Health Card issuer keys, revocation lists and the verifier page; serves the signed issuer directory `hie-certs issuers sign` writes ([certificates.md](../certificates.md))',
  },
  'certificates.issuersFile': {
    text: 'public HTTPS listener (relay certificate, no client certificate) for SMART Health Card issuer keys, revocation lists and the verifier page; serves the signed issuer directory `hie-certs issuers sign` writes ([certificates.md](../certificates.md))',
  },
  'certificates.host': {
    text: 'public HTTPS listener (relay certificate, no client certificate) for SMART Health Card issuer keys, revocation lists and the verifier page; serves the signed issuer directory `hie-certs issuers sign` writes ([certificates.md](../certificates.md))',
  },
  'certificates.port': {
    text: 'public HTTPS listener (relay certificate, no client certificate) for SMART Health Card issuer keys, revocation lists and the verifier page; serves the signed issuer directory `hie-certs issuers sign` writes ([certificates.md](../certificates.md))',
  },
  'limits.maxFrame': { text: 'largest frame; bigger ones close the connection with 1009', default: '1 MiB + 6' },
  'limits.maxHeader': { text: 'largest transfer metadata / notice body', default: '16 KiB' },
  'limits.maxMessage': { text: 'largest routed message', default: '64 KiB' },
  'limits.maxOpenTransfers': { text: 'open transfers per connection, each direction' },
  'limits.maxTransfersPerSender': {
    text: 'fair share: of the transfers open towards one agent, at most this many from one sender; more are refused with `too-many-transfers` (reason `sender-share: ...`)',
  },
  'limits.transferIdleMs': { text: 'a transfer on which neither data nor credit moves for this long is aborted at both ends with `idle-timeout`' },
  'limits.maxConnections': { text: 'agent connections; more are refused with 503' },
  'limits.maxConnectionsPerAddress': {
    text: 'concurrent TCP connections from one remote address, counted from accept (before the TLS handshake, so half-open handshakes count) until the socket closes; more are closed at once (`connections_refused_total{reason="per-address"}`). Behind a NAT or a TCP proxy that hides agents\' addresses, raise it to the number of agents behind it',
  },
  'limits.handshakeTimeoutMs': {
    text: "a connection that has not completed its TLS handshake this long after accept is closed (`handshake_timeouts_total`; Node's own default would hold it 120 s); 100 to 120000",
  },
  'limits.highWaterMark': { text: 'bytes queued towards one agent before the relay stops reading its sources', default: '2 MiB' },
  'limits.tlsWritePiece': {
    text: 'the largest piece of a frame handed to TLS at once; Node\'s TLS layer keeps a buffer of about this size per agent that has received a large frame, so it bounds that memory (docs/performance.md, "Relay memory at scale"); the default is one full TLS record, and larger pieces measured no less CPU per GiB (docs/performance.md)',
    default: '16 KiB',
  },
  'limits.writeTimeoutMs': { text: 'an agent that drains nothing for this long loses its transfers (`write-timeout`) and its connection' },
  'limits.pingIntervalMs': {
    text: 'heartbeat: the relay pings every agent this often and cuts off one that did not answer the previous ping (a dead link or a peer that stopped reading); its transfers are aborted with `peer-gone`. Agents ping the relay the same way and reconnect (`RelayClient` option `pingIntervalMs`). 0 disables',
  },
  'limits.shutdownGraceMs': { text: 'how long SIGTERM waits for open transfers' },
  'tariff.currency': { text: 'fee per completed transfer: `perTransfer + ceil(bytes * perGiB / 2^30)`, integer minor units' },
  'tariff.perTransfer': { text: 'fee per completed transfer: `perTransfer + ceil(bytes * perGiB / 2^30)`, integer minor units' },
  'tariff.perGiB': { text: 'fee per completed transfer: `perTransfer + ceil(bytes * perGiB / 2^30)`, integer minor units' },
  'tariff.releaseFee': {
    text: 'release fee a requesting hospital pays the hospital that answers its records request, once per answering exchange (integer minor units; carried in every signed usage statement, 0: none)',
  },
  'log.level': {
    text: 'pino level; logs are JSON lines on stdout (`time` in ISO 8601 UTC, e.g. `"2026-11-02T09:30:00.000Z"`), written in batches (up to 4 KiB, at least every 250 ms, and everything left on exit; a `kill -9` can cost the last 250 ms of lines). If nothing reads stdout, lines beyond 16 MiB are dropped and stderr says so, once a minute',
  },
  'node.id': { text: "this node's id on a cluster (`[A-Za-z0-9_-]{1,64}`, unique per node)", default: 'hostname + random suffix' },
  'nats.servers': {
    text: 'NATS URLs (`nats://` or `tls://host:port`); set to run as one node of a cluster (see "Scaling out"); env: comma-separated',
    default: 'none (single node)',
  },
  'nats.userEnv': { text: "names of env vars holding this node's NATS user and password (set both or neither)" },
  'nats.passwordEnv': { text: "names of env vars holding this node's NATS user and password (set both or neither)" },
  'nats.tokenEnv': { text: 'name of an env var holding a NATS token (instead of user/password)' },
  'nats.tls.ca': { text: 'CA that signed the NATS server certificate; optional client certificate and key for NATS mTLS' },
  'nats.tls.cert': { text: 'CA that signed the NATS server certificate; optional client certificate and key for NATS mTLS' },
  'nats.tls.key': { text: 'CA that signed the NATS server certificate; optional client certificate and key for NATS mTLS' },
  'nats.subjectPrefix': { text: "prefix of the relay's NATS subjects" },
  'nats.requestTimeoutMs': { text: 'presence lookups unanswered this long count as `no-route` (no responders answers at once)' },
  'nats.window': { text: 'credit per cross-node transfer forwarded ahead of the data: bounds bytes in flight through NATS', default: '8 MiB' },
  'nats.nodeCheckMs': { text: 'a node silent this long while sharing transfers is pinged; no answer aborts them (`peer-gone`)' },
};

/** Notes on the agent's config keys, by dotted key. */
export const AGENT_CONFIG_NOTES: Readonly<Record<string, ConfigNote>> = {
  id: { text: "this hospital's id" },
  'identity.cert': {
    text: 'files from the relay operator; the CRL is polled every 2 s and re-read on SIGHUP (`systemctl reload hie-agent`); `identity.passphraseEnv` names an env var for an encrypted key',
  },
  'identity.key': {
    text: 'files from the relay operator; the CRL is polled every 2 s and re-read on SIGHUP (`systemctl reload hie-agent`); `identity.passphraseEnv` names an env var for an encrypted key',
  },
  'identity.ca': {
    text: 'files from the relay operator; the CRL is polled every 2 s and re-read on SIGHUP (`systemctl reload hie-agent`); `identity.passphraseEnv` names an env var for an encrypted key',
  },
  'identity.crl': {
    text: 'files from the relay operator; the CRL is polled every 2 s and re-read on SIGHUP (`systemctl reload hie-agent`); `identity.passphraseEnv` names an env var for an encrypted key',
  },
  'identity.passphraseEnv': { text: 'name of an env var holding the passphrase of an encrypted `identity.key`' },
  'relay.urls': {
    text: '`wss://` URLs of relay nodes: the agent connects to the first; when that connection goes away (or an attempt fails) it tries the next, round robin, with exponential backoff and full jitter once all have failed in a row; exchanges cut off by a lost node are retried exactly once',
  },
  peers: { text: 'hospitals to replicate the ledger with' },
  dataDir: { text: 'ledger, exchange state, inbox, outbox, keys (created 0700)' },
  'api.host': { text: "local API; keep it on loopback or the EHR's network" },
  'api.port': { text: "local API; keep it on loopback or the EHR's network" },
  'api.tokensEnv': {
    text: 'where the bearer tokens come from (`name[@role]:token`, tokens >= 32 characters; role `ehr`, `compliance` or `admin`, none = `admin`: see [compliance-console.md](../compliance-console.md))',
  },
  'api.tokensFile': {
    text: 'where the bearer tokens come from (`name[@role]:token`, tokens >= 32 characters; role `ehr`, `compliance` or `admin`, none = `admin`: see [compliance-console.md](../compliance-console.md))',
  },
  'patientSecret.env': { text: 'hex secret (>= 32 bytes) for the patient-id HMAC' },
  'patientSecret.file': { text: 'hex secret (>= 32 bytes) for the patient-id HMAC' },
  'patients.identifierSystem': {
    text: "the hospital's own patient identifier system (a URI, e.g. its MRN system `urn:oid:...`): a bare patient id (`Hie-Patient-Id: MRN-0001`, a consent's `patientId`) is a value of this system, and a FHIR Bundle's Patient must carry it under this system; unset, a bare id matches that value under any system (see \"How patients are identified\"). Set it before granting consents: the keyed hash of `system\\|value` under this system is that of the bare value",
  },
  'patients.dicomIssuer': {
    text: "the Issuer of Patient ID (0010,0021) the hospital's own DICOM writes: a DICOM Patient ID with this issuer, or with none, is a value of `patients.identifierSystem`; an OID issuer is `urn:oid:<oid>`, any other a system of that name (see [fhir-validation.md](../fhir-validation.md))",
  },
  'patients.app.enabled': {
    text: "patients as a party: connect the patient hub to the relay and serve `/v1/patients/...` (enrolment codes with QR, consent requests the patient signs in the app, the patient's access log); see [patients.md](../patients.md)",
  },
  'patients.app.url': {
    text: 'where the relay serves the patient app (the link in each enrolment QR code)',
    default: '`https://RELAY/patient/` of the first `relay.urls`',
  },
  'patients.app.codeSeconds': { text: 'how long a one-time enrolment code is good for (60 to 86400 s)' },
  'consent.requirePatientSigned': {
    text: "as a recipient, accept a release only under a consent the patient signed on their device: a hospital-attested consent, or one not yet in this agent's copy of the sender's ledger feed, gets a failed receipt `ERR_CONSENT_NOT_PATIENT_SIGNED`; a patient-signed consent whose signature does not verify is refused (`ERR_CONSENT_SIGNATURE`) whatever this says; see [patients.md](../patients.md)",
  },
  'inbox.directory': {
    text: 'a directory the EHR (or its integration engine) watches: each delivered item is also written there, its content as `<exchange id>.fhir.json`, `.dcm` or `.bin`, then its metadata as `<exchange id>.meta.json` (written last: its appearance means the item is complete), each fsynced and renamed into place from a `.part` file; the item is marked `copiedAt` and stays in the inbox until the EHR acks or deletes it through the API; deleting it (`DELETE /v1/inbox/:id`) also removes its two files here (an ack leaves them: the EHR may still be reading them). The metadata shows the SHA-256 as lowercase hex, as `sha256sum` prints it. At start-up, unacked items not yet copied (delivered before the key was set, or cut short by a crash) are written, so a file may come twice under the same name, never not at all. Created 0750 if missing',
  },
  'inbox.webhook.url': {
    text: 'the EHR endpoint told (one POST, JSON, `Authorization: Bearer` the token in the named env var) about each new inbox item (`inbox.delivered`: metadata only, the EHR fetches the content) and each accepted records request (`request.received`: with the patient id, so the EHR can find the records); `https://`, or `http://` to localhost, 127.0.0.1 or [::1] only',
  },
  'inbox.webhook.tokenEnv': {
    text: 'the EHR endpoint told (one POST, JSON, `Authorization: Bearer` the token in the named env var) about each new inbox item (`inbox.delivered`: metadata only, the EHR fetches the content) and each accepted records request (`request.received`: with the patient id, so the EHR can find the records); `https://`, or `http://` to localhost, 127.0.0.1 or [::1] only',
  },
  'limits.maxExchangeBytes': {
    text: 'largest payload accepted; a FHIR Bundle (`application/fhir+json`) is parsed whole to be validated, so it is also capped at 32 MiB (`413 ERR_PAYLOAD_TOO_LARGE`): send larger attachments as binary exchanges',
    default: '16 GiB',
  },
  'limits.maxConcurrentSends': { text: 'sends in flight (a single envelope or a batch envelope each); more wait in the queue' },
  'limits.sendWhileUploading': {
    text: 'seal and send a binary body while it uploads; the recipient can release it only after it is stored and logged (`false`: store the whole body first, then send)',
  },
  'limits.inlineBodyBytes': {
    text: 'a body up to this size that comes with a `Content-Length` is kept in the state database (written with its record in one synced batch, no outbox file) and sent in a batch envelope; 0 turns that off; at most 1 MiB',
    default: '262144 (256 KiB)',
  },
  'limits.maxBatchExchanges': { text: 'most small exchanges to one recipient sealed into one batch envelope (1: each in its own envelope); at most 64' },
  'limits.fhirValidationThreads': {
    text: "worker threads that validate the FHIR Bundles submitted as exchanges or as a patient's records copy against the R4 definitions, off the main thread every exchange passes through (each holds its own copy of the definitions, about 60 MiB RSS); 0 validates on the main thread (a 30 MiB Bundle then holds the whole agent for about half a minute); a Bundle of at most 16 KiB is validated on the main thread when every thread has more than 1 MiB of Bundles waiting; a thread that fails is replaced and what it held is validated on the main thread; at most 16 ([performance.md](../performance.md#small-exchanges-validation-off-the-main-thread))",
    default: '1, on one core too',
  },
  'limits.maxConsentDecisions': {
    text: "consent decisions (permit and deny) the agent's local decision log keeps, the oldest dropped first ([consent.md](../consent.md)); at most 10000000",
  },
  'recovery.timeoutMs': {
    text: 'at start-up the agent asks its peers for its own ledger feed beyond its local head before it appends ([recovery.md](../recovery.md)): how long one round waits for their answers (1000 to 3600000)',
  },
  'recovery.minPeers': {
    text: 'peers that must have answered before appends go on while others stay silent; 0 carries on after `recovery.timeoutMs` regardless (risks equivocation, see docs/recovery.md)',
  },
  'replication.mode': {
    text: "what each peer receives of this agent's ledger feed: `private` sends each peer in the clear only the entries it is a party to and every other entry as a sealed record only this agent can open (hashes in the clear, so peers still witness, verify and restore the feed); `full` sends every peer the whole feed in the clear; see [replication.md](../replication.md)",
  },
  'ledger.witness.policy.quorum': {
    text: "when a checkpoint counts as witnessed for the proofs the API serves: `quorum` distinct witnesses among `witnesses` (agent ids, or cosignature/v1 vkeys of outside witnesses; `[]`: any agent other than the feed's author); see [verification.md](../verification.md)",
  },
  'ledger.witness.policy.witnesses': {
    text: "when a checkpoint counts as witnessed for the proofs the API serves: `quorum` distinct witnesses among `witnesses` (agent ids, or cosignature/v1 vkeys of outside witnesses; `[]`: any agent other than the feed's author); see [verification.md](../verification.md)",
  },
  'log.level': { text: "pino level; JSON lines on stdout, written in batches like the relay's" },
  'console.enabled': { text: 'serve the compliance console at `/console` ([compliance-console.md](../compliance-console.md))' },
  'console.sessionIdleMinutes': { text: 'a console session ends after this many minutes without a request (and 8 hours after sign-in in any case)' },
  'certificates.iss': {
    text: 'the `iss` of the SMART Health Cards this agent issues (`POST /v1/certificates`): `https://<relay certificate listener>/issuers/<id>`; unset: no issuance ([certificates.md](../certificates.md))',
  },
};
