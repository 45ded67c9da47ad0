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
