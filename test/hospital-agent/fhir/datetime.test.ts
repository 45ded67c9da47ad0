import { expect } from 'chai';
import { parseFhirDateTime } from '../../../hospital-agent/fhir/datetime.ts';

describe('parseFhirDateTime', function () {
  it('reads full date-times with a timezone as the instant they name', function () {
    expect(parseFhirDateTime('2031-06-01T10:00:00Z')?.toISOString()).to.equal('2031-06-01T10:00:00.000Z');
    expect(parseFhirDateTime('2031-06-01T10:00:00.25+02:00')?.toISOString()).to.equal('2031-06-01T08:00:00.250Z');
    expect(parseFhirDateTime('2031-06-01T10:00:00-05:30', 'end')?.toISOString()).to.equal('2031-06-01T15:30:00.000Z');
  });

  it('maps a partial date to the first millisecond of its period as a start and the last as an end (UTC)', function () {
    const cases: Array<[string, string, string]> = [
      ['2031', '2031-01-01T00:00:00.000Z', '2031-12-31T23:59:59.999Z'],
      ['2031-02', '2031-02-01T00:00:00.000Z', '2031-02-28T23:59:59.999Z'],
      ['2032-02', '2032-02-01T00:00:00.000Z', '2032-02-29T23:59:59.999Z'],
      ['2031-12-31', '2031-12-31T00:00:00.000Z', '2031-12-31T23:59:59.999Z'],
      ['0001', '0001-01-01T00:00:00.000Z', '0001-12-31T23:59:59.999Z'],
    ];
    for (const [text, start, end] of cases) {
      expect(parseFhirDateTime(text, 'start')?.toISOString(), text).to.equal(start);
      expect(parseFhirDateTime(text, 'end')?.toISOString(), text).to.equal(end);
    }
  });

  it('refuses everything Date.parse would have guessed at', function () {
    for (const junk of [
      'not-a-date-7731',
      'hello 2031',
      '2031-13-01',
      '2031-02-30',
      '2031-02-29',
      '2031-00-10',
      '2031-06-00',
      '2031-06-01T10:00:00',
      '2031-06-01T10:00Z',
      '2031-06-01T24:00:00Z',
      '2031-06-01T10:60:00Z',
      '2031-06-01T10:00:60Z',
      '2031-06-01T10:00:00+24:00',
      '2031-06-01 10:00:00Z',
      '2031-06-01t10:00:00z',
      'Sun, 01 Jun 2031 10:00:00 GMT',
      '06/01/2031',
      '0000',
      '10000-01-01',
      '+002031-01-01T00:00:00Z',
      ' 2031',
      '2031-6-1',
      '',
    ]) {
      expect(parseFhirDateTime(junk), junk).to.equal(undefined);
      expect(parseFhirDateTime(junk, 'end'), junk).to.equal(undefined);
    }
  });
});
