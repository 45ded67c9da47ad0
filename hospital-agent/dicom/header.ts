/**
 * The patient a DICOM Part 10 file is about, read from its header with
 * `dicom-parser`: Patient ID (0010,0020) and, when present, Issuer of
 * Patient ID (0010,0021). Only a bounded prefix of the stream is read
 * ({@link DICOM_HEADER_BYTES}); the study itself is never buffered: the
 * prefix is handed back in front of the rest of the stream
 * ({@link peekDicomPatient}).
 */
import { PassThrough, pipeline, type Readable } from 'node:stream';
import dicomParser from 'dicom-parser';
import { AgentError } from '../errors.ts';

/** Most bytes of a DICOM body read to find its Patient ID: the header (file meta and patient module) comes well before pixel data. */
export const DICOM_HEADER_BYTES = 1024 * 1024;

/** The patient elements of a DICOM header (values, to be compared in memory; never logged). */
export interface DicomPatient {
  /** Patient ID (0010,0020), trimmed of DICOM's space padding. */
  id: string;
  /** Issuer of Patient ID (0010,0021), when present and not empty. */
  issuer?: string | undefined;
}

type DataSet = ReturnType<typeof dicomParser.parseDicom>;

function invalid(message: string): AgentError {
  return new AgentError('ERR_DICOM_INVALID', `DICOM: ${message}`);
}

/** The string value of `tag` in `ds` when its bytes are all inside `bytes`; undefined when absent. */
function element(ds: DataSet | undefined, tag: string, bytes: number): string | undefined {
  const e = ds?.elements[tag];
  if (!e || !ds) return undefined;
  if (e.dataOffset + e.length > bytes) return undefined;
  const text = ds.string(tag);
  return text === undefined ? undefined : text.trim();
}

/** Parses `bytes` until `tag`: the data set (also when parsing stopped at the end of the prefix), or the parser's failure. */
function parseUntil(bytes: Uint8Array, tag: string): { ds?: DataSet; failed?: string } {
  try {
    return { ds: dicomParser.parseDicom(bytes, { untilTag: tag }) };
  } catch (err) {
    const e = err as { dataSet?: DataSet; exception?: unknown } | string;
    if (typeof e === 'object' && e && e.dataSet) return { ds: e.dataSet, failed: String(e.exception ?? 'parse error') };
    return { failed: String(typeof e === 'object' && e ? (e.exception ?? 'parse error') : e) };
  }
}

/**
 * Reads the patient of a DICOM Part 10 file from its first bytes (`head`;
 * `complete` when `head` is the whole file). Throws ERR_DICOM_INVALID when
 * the bytes are not Part 10 ("DICM" at offset 128) or hold no Patient ID
 * within them. Messages name elements, never values.
 */
export function readDicomPatient(head: Uint8Array, complete: boolean): DicomPatient {
  const bytes = head.subarray(0, DICOM_HEADER_BYTES);
  if (bytes.length < 132 || Buffer.from(bytes.subarray(128, 132)).toString('latin1') !== 'DICM')
    throw invalid('the body is not a DICOM Part 10 file (no "DICM" prefix at offset 128)');
  const { ds, failed } = parseUntil(bytes, 'x00100020');
  const id = element(ds, 'x00100020', bytes.length);
  if (!id) {
    if (failed && !/overrun|position|length/i.test(failed)) throw invalid('the header cannot be parsed');
    if ((complete && head.length <= DICOM_HEADER_BYTES) || ds?.elements['x00100020']) throw invalid('the file has no Patient ID (0010,0020)');
    throw invalid(`no Patient ID (0010,0020) within the first ${DICOM_HEADER_BYTES} bytes`);
  }
  // Issuer of Patient ID directly follows Patient ID when present; parsing on past it ends in the prefix's end, not an error.
  const issuer = element(parseUntil(bytes, 'x00100021').ds, 'x00100021', bytes.length);
  return issuer ? { id, issuer } : { id };
}

/**
 * Reads at most {@link DICOM_HEADER_BYTES} (plus the rest of the chunk that
 * crosses it) from `body`, reads the patient from them, and returns it with
 * a stream that yields the whole body again (the bytes read, then the rest
 * of `body`), for the outbox or a live send. A parse failure throws
 * ERR_DICOM_INVALID; the caller owns `body` then.
 */
export async function peekDicomPatient(body: Readable): Promise<{ patient: DicomPatient; body: Readable }> {
  const { head, ended } = await readHead(body, DICOM_HEADER_BYTES);
  const patient = readDicomPatient(head, ended);
  const out = new PassThrough();
  out.write(head);
  if (ended) out.end();
  else {
    pipeline(body, out, () => {
      // An error reaches the consumer of `out`, which pipeline destroys with it.
    });
    body.resume();
  }
  return { patient, body: out };
}

/** Collects chunks of `body` until `max` bytes or its end, then pauses it. */
function readHead(body: Readable, max: number): Promise<{ head: Buffer; ended: boolean }> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let n = 0;
    const done = (ended: boolean): void => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      if (!ended) body.pause();
      resolve({ head: Buffer.concat(parts, n), ended });
    };
    const onData = (chunk: Buffer): void => {
      parts.push(chunk);
      n += chunk.length;
      if (n >= max) done(false);
    };
    const onEnd = (): void => done(true);
    const onError = (err: Error): void => {
      body.off('data', onData);
      body.off('end', onEnd);
      reject(err);
    };
    body.on('data', onData);
    body.once('end', onEnd);
    body.once('error', onError);
  });
}
