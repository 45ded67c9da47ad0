import { expect } from 'chai';
import { startNetwork, waitFor, type TestNetwork } from '../support/agents.ts';
import { tempDir } from '../support/tmp.ts';

describe('what the agent takes from the EHR about consent', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;

  before(async function () {
    tmp = tempDir();
    net = await startNetwork(tmp.dir, ['myongji', 'severance']);
    await waitFor(() => Object.values(net.agents).every((a) => a.relay.connected), 20_000, 'agents connected');
  });
  after(async function () {
    await net?.close();
    tmp.cleanup();
  });

  /** This agent's own feed head (seq and hash) and how many consents it holds. */
  async function recorded(id: string): Promise<{ head: unknown; consents: number; exchanges: number }> {
    const status = (await (await net.api(id, '/v1/ledger/status')).json()) as { feed: string; feeds: Array<{ feed: string }> };
    const consents = ((await (await net.api(id, '/v1/consents')).json()) as { consents: unknown[] }).consents.length;
    const exchanges = ((await (await net.api(id, '/v1/exchanges')).json()) as { exchanges: unknown[] }).exchanges.length;
    return { head: status.feeds.find((f) => f.feed === status.feed), consents, exchanges };
  }

  describe('strict dates', function () {
    const junk = [
      'not-a-date-7731',
      'hello 2031',
      '2031-13-01',
      '2031-02-30',
      '2031-06-01T10:00:00',
      '2031-06-01 10:00:00Z',
      '2031-06-01T25:00:00Z',
      'Sun, 01 Jun 2031 10:00:00 GMT',
      '06/01/2031',
      '2031-6-1',
    ];

    async function post(body: unknown, contentType = 'application/json'): Promise<{ status: number; error: { code: string; message: string } }> {
      const res = await net.api('myongji', '/v1/consents', { method: 'POST', headers: { 'content-type': contentType }, body: JSON.stringify(body) });
      const json = (await res.json()) as { error: { code: string; message: string } };
      return { status: res.status, error: json.error };
    }

    it('refuses a junk validUntil or validFrom with 400 naming the field, and records nothing', async function () {
      const before = await recorded('myongji');
      for (const date of junk) {
        for (const [field, body] of [
          ['validUntil', { patientId: 'SYN-DATES-1', grantee: 'severance', validUntil: date }],
          ['validFrom', { patientId: 'SYN-DATES-1', grantee: 'severance', validFrom: date, validUntil: '2099-01-01T00:00:00Z' }],
        ] as const) {
          const { status, error } = await post(body);
          expect(status, `${field} ${date}`).to.equal(400);
          expect(error.code, `${field} ${date}`).to.equal('ERR_BAD_REQUEST');
          expect(error.message, `${field} ${date}`).to.contain(field);
          expect(error.message, `${field} ${date}`).not.to.contain(date);
        }
      }
      expect(await recorded('myongji')).to.deep.equal(before);
    });

    it('refuses a junk provision.period date in a FHIR Consent with 400 naming the field, and records nothing', async function () {
      const before = await recorded('myongji');
      const fhir = (period: Record<string, string>): unknown => ({
        resourceType: 'Consent',
        status: 'active',
        patient: { identifier: { value: 'SYN-DATES-2' } },
        provision: {
          type: 'permit',
          period,
          actor: [{ reference: { identifier: { system: 'urn:ietf:rfc:3986', value: 'urn:hie:agent:severance' } } }],
          purpose: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'TREAT' }],
        },
      });
      for (const date of junk) {
        for (const [field, period] of [
          ['provision.period.end', { end: date }],
          ['provision.period.start', { start: date, end: '2099' }],
        ] as const) {
          const { status, error } = await post(fhir(period), 'application/fhir+json');
          expect(status, `${field} ${date}`).to.equal(400);
          expect(error.code, `${field} ${date}`).to.equal('ERR_BAD_REQUEST');
          expect(error.message, `${field} ${date}`).to.contain(field);
        }
      }
      expect(await recorded('myongji')).to.deep.equal(before);
    });

    it('takes a partial date as its whole period: validFrom its first millisecond, validUntil its last (UTC)', async function () {
      const res = await net.api('myongji', '/v1/consents', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ patientId: 'SYN-DATES-3', grantee: 'severance', validFrom: '2030-02', validUntil: '2031' }),
      });
      expect(res.status, await res.clone().text()).to.equal(201);
      expect(await res.json()).to.include({ validFrom: '2030-02-01T00:00:00.000Z', validUntil: '2031-12-31T23:59:59.999Z' });
      const offset = await net.api('myongji', '/v1/consents', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ patientId: 'SYN-DATES-3', grantee: 'severance', validUntil: '2031-06-01T10:00:00+02:00' }),
      });
      expect(offset.status).to.equal(201);
      expect(await offset.json()).to.include({ validUntil: '2031-06-01T08:00:00.000Z' });
    });
  });
});
