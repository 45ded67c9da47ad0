// One job: the demo's e-prescription step: Myongji prescribes, a pharmacy accepts the patient's token (read back from
// its QR code), dispenses, gets the signed receipt, and a second dispense of the same prescription is refused.
import jsQRModule from 'jsqr';
import { PNG } from 'pngjs';
import { medicationDispense, medicationRequest } from '../../test/support/pharmacy.ts';

type Api = (member: string, path: string, init?: RequestInit) => Promise<{ status: number; body: Record<string, unknown> }>;

// jsqr ships CommonJS with a default export the ESM interop wraps once more.
const jsQR = (jsQRModule as unknown as { default: typeof jsQRModule.default }).default ?? jsQRModule;
const post = (body: unknown): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

/** Runs the step; throws when anything does not happen as it should. */
export async function prescriptionDemo(api: Api, prescriber: string, pharmacy: string, patient: string, ok: (text: string) => void): Promise<void> {
  const issued = await api(prescriber, '/v1/prescriptions', post({ patientId: patient, medicationRequest: medicationRequest(patient), qr: true }));
  if (issued.status !== 201) throw new Error(`prescription refused: ${JSON.stringify(issued.body)}`);
  const id = issued.body['id'] as string;
  const png = PNG.sync.read(Buffer.from(String(issued.body['qr']).replace(/^data:image\/png;base64,/, ''), 'base64'));
  const token = jsQR(new Uint8ClampedArray(png.data), png.width, png.height)?.data;
  if (token !== issued.body['token']) throw new Error('the QR code does not read back as the token');
  ok(
    `prescription ${id} ready: a signed MedicationRequest; the patient gets a QR code (${png.width}x${png.height}) with a 256-bit access code, kept only as a hash`,
  );
  const accepted = await api(pharmacy, '/v1/dispensing', post({ token }));
  if (accepted.status !== 200) throw new Error(`accept refused: ${JSON.stringify(accepted.body)}`);
  ok(`${pharmacy} scanned it and accepted it: in progress there, with a secret that binds its next steps`);
  const closed = await api(pharmacy, `/v1/dispensing/${prescriber}/${id}/close`, post({ medicationDispense: medicationDispense(patient) }));
  if (closed.status !== 200) throw new Error(`close refused: ${JSON.stringify(closed.body)}`);
  const receipt = String(closed.body['receipt']);
  ok(`dispensed; ${prescriber} returned a signed dispense receipt (${receipt.length}-character JWS, verified by ${pharmacy})`);
  const again = await api(pharmacy, '/v1/dispensing', post({ token }));
  const code = (again.body['error'] as { code?: string } | undefined)?.code;
  if (again.status !== 412 || code !== 'ERR_RX_WRONG_STATE')
    throw new Error(`a second dispense was not refused: ${again.status} ${JSON.stringify(again.body)}`);
  ok(`a second dispense of the same prescription is refused: ${again.status} ${code}`);
  const task = (await api(prescriber, `/v1/prescriptions/${id}`)).body;
  if (task['status'] !== 'completed' || task['pharmacy'] !== pharmacy) throw new Error(`the prescription is ${String(task['status'])}`);
  ok(`at ${prescriber}: completed by ${pharmacy}; ledger: prescription.issued, .accepted, .completed (hashes and parties only)`);
}
