// One job: the overview's chart of exchanges per day, drawn on the server as SVG (no script, no inline style).
import { html, type SafeHtml } from './html.ts';

/** One day of the chart. */
export interface DayCounts {
  day: string;
  sent: number;
  received: number;
  failed: number;
}

const W = 720;
const H = 220;
const PAD = { left: 40, right: 10, top: 10, bottom: 40 };

/**
 * Grouped bars (sent, received, failed) per day with a y axis, a legend and a
 * text alternative (`<title>` and a table the page shows next to it). Colours
 * come from console.css classes.
 */
export function exchangesChart(days: readonly DayCounts[]): SafeHtml {
  const max = Math.max(1, ...days.flatMap((d) => [d.sent, d.received, d.failed]));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const slot = plotW / Math.max(1, days.length);
  const bar = Math.max(1, (slot - 4) / 3);
  const y = (v: number): number => PAD.top + plotH - (v / max) * plotH;
  const bars = days.map((d, i) => {
    const x0 = PAD.left + i * slot + 2;
    const one = (v: number, k: number, cls: string) =>
      html`<rect
        class="${cls}"
        x="${(x0 + k * bar).toFixed(1)}"
        y="${y(v).toFixed(1)}"
        width="${bar.toFixed(1)}"
        height="${(PAD.top + plotH - y(v)).toFixed(1)}"
        ><title>${d.day}: ${v} ${cls.replace('bar-', '')}</title></rect
      >`;
    const label =
      i % Math.ceil(days.length / 7) === 0
        ? html`<text class="axis" x="${(x0 + slot / 2).toFixed(1)}" y="${H - PAD.bottom + 16}" text-anchor="middle">${d.day.slice(5)}</text>`
        : '';
    return html`${one(d.sent, 0, 'bar-sent')}${one(d.received, 1, 'bar-received')}${one(d.failed, 2, 'bar-failed')}${label}`;
  });
  const ticks = [0, Math.ceil(max / 2), max].map(
    (v) =>
      html`<text class="axis" x="${PAD.left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${v}</text
        ><line class="grid" x1="${PAD.left}" x2="${W - PAD.right}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}"></line>`,
  );
  const total = days.reduce((a, d) => ({ sent: a.sent + d.sent, received: a.received + d.received, failed: a.failed + d.failed }), {
    sent: 0,
    received: 0,
    failed: 0,
  });
  const legend = [
    ['bar-sent', `sent (${total.sent})`],
    ['bar-received', `received (${total.received})`],
    ['bar-failed', `failed (${total.failed})`],
  ].map(
    ([cls, text], i) =>
      html`<rect class="${cls}" x="${PAD.left + i * 170}" y="${H - 16}" width="12" height="12"></rect
        ><text class="axis" x="${PAD.left + i * 170 + 18}" y="${H - 6}">${text}</text>`,
  );
  return html`<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg">
    <title id="chart-title">Exchanges per day, last ${days.length} days: ${total.sent} sent, ${total.received} received, ${total.failed} failed</title>
    ${ticks}${bars}${legend}
  </svg>`;
}
