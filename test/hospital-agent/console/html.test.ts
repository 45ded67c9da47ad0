import { expect } from 'chai';
import { html, unsafeRaw } from '../../../hospital-agent/console/html.ts';

describe('html templates', function () {
  it('escapes every interpolated string, in text and in attributes', function () {
    const evil = `<script>alert("x")</script>' onload='x' \``;
    const out = html`<p title="${evil}">${evil}</p>`.text;
    expect(out).not.to.include('<script>');
    expect(out).not.to.include(`"x"`);
    expect(out).to.equal(
      '<p title="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39; onload=&#39;x&#39; &#96;">&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39; onload=&#39;x&#39; &#96;</p>',
    );
  });

  it('inserts nested templates and lists as they are, and skips nothing values', function () {
    const rows = ['a<b', 'c'].map((v) => html`<li>${v}</li>`);
    // prettier-ignore
    const list = html`<ul>${rows}${undefined}${null}${false}${0}</ul>`;
    expect(list.text).to.equal('<ul><li>a&lt;b</li><li>c</li>0</ul>');
    expect(html`${unsafeRaw('<b>x</b>')}`.text).to.equal('<b>x</b>');
  });
});

describe('console chart and amounts', function () {
  it('draws one bar per series per day, tallest for the largest count, with a text alternative', async function () {
    const { exchangesChart } = await import('../../../hospital-agent/console/chart.ts');
    const svg = exchangesChart([
      { day: '2026-11-01', sent: 4, received: 1, failed: 0 },
      { day: '2026-11-02', sent: 2, received: 0, failed: 1 },
    ]).text;
    const heights = [...svg.matchAll(/<rect\s+class="bar-(sent|received|failed)"\s+x="[\d.]+"\s+y="[\d.]+"\s+width="[\d.]+"\s+height="([\d.]+)"/g)].map((m) => [
      m[1],
      Number(m[2]),
    ]);
    expect(heights).to.have.length(6 + 3); // six bars and three legend swatches
    const sent = heights.filter(([k]) => k === 'sent').map(([, h]) => h as number);
    expect(sent[0]).to.be.greaterThan(sent[1] as number);
    expect(svg.replace(/\s+/g, ' ')).to.include('Exchanges per day, last 2 days: 6 sent, 1 received, 1 failed');
    expect(svg).not.to.include('style=');
  });

  it('writes minor units as currency units with the currency, by its ISO 4217 exponent', async function () {
    const { money } = await import('../../../hospital-agent/console/format.ts');
    expect(money(250, 'EUR')).to.equal('2.50 EUR');
    expect(money(5, 'USD')).to.equal('0.05 USD');
    expect(money(-120050, 'EUR')).to.equal('-1200.50 EUR');
    expect(money(1500, 'KRW')).to.equal('1500 KRW');
    expect(money(1500, 'JPY')).to.equal('1500 JPY');
    expect(money(1234, 'BHD')).to.equal('1.234 BHD');
  });
});
