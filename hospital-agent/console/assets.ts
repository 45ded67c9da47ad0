// One job: the console's static files: its stylesheet (screen and print), its one small script, and htmx from its package.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

/** The console's stylesheet (served at /console/static/console.css; no inline style anywhere). */
export const CONSOLE_CSS = `:root { --fg: #1a1a1a; --muted: #4a4a4a; --bg: #fff; --line: #c8c8c8; --accent: #0b5394; --ok: #1b6e20; --bad: #a30000; --warn: #7a4b00; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { background: #f1f4f8; border-bottom: 1px solid var(--line); padding: 0.5rem 1rem; }
.brand { margin: 0 0 0.3rem; }
nav ul { list-style: none; display: flex; flex-wrap: wrap; gap: 0.2rem 1rem; margin: 0; padding: 0; }
nav a { color: var(--accent); text-decoration: none; padding: 0.15rem 0; }
nav a[aria-current="page"] { font-weight: 700; border-bottom: 2px solid var(--accent); }
a { color: var(--accent); }
a:focus, button:focus, input:focus, select:focus { outline: 3px solid #f0a30a; outline-offset: 1px; }
.sign-out { margin-top: 0.3rem; color: var(--muted); font-size: 0.9em; }
main { padding: 0.5rem 1rem 2rem; max-width: 1300px; }
h1 { font-size: 1.5rem; margin: 0.5rem 0 1rem; }
h2 { font-size: 1.15rem; margin: 1.4rem 0 0.5rem; }
h3 { font-size: 1rem; margin: 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; width: 100%; }
caption { text-align: left; color: var(--muted); padding: 0.2rem 0; }
th, td { border: 1px solid var(--line); padding: 0.25rem 0.45rem; text-align: left; vertical-align: top; }
th { background: #f1f4f8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 0.9em; }
pre { white-space: pre-wrap; word-break: break-all; margin: 0; font-size: 0.8em; }
form.filters fieldset { border: 1px solid var(--line); display: flex; flex-wrap: wrap; gap: 0.5rem 1rem; align-items: end; }
label { display: inline-flex; flex-direction: column; font-size: 0.9em; gap: 0.1rem; }
input, select, button { font: inherit; padding: 0.2rem 0.35rem; }
button, .button { background: var(--accent); color: #fff; border: 0; border-radius: 3px; padding: 0.35rem 0.8rem; cursor: pointer; text-decoration: none; display: inline-block; }
.note { color: var(--muted); }
.ok { color: var(--ok); }
.bad { color: var(--bad); }
.warn { color: var(--warn); }
.status { padding: 0 0.3rem; border-radius: 3px; border: 1px solid var(--line); white-space: nowrap; }
.status-delivered, .status-received, .status-active, .status-complete, .status-completed { color: var(--ok); }
.status-failed, .status-revoked, .status-error, .status-cancelled, .status-rejected { color: var(--bad); }
.status-pending, .status-expired, .status-not-yet-valid, .status-sent, .status-queued, .status-partial, .status-ready, .status-in-progress { color: var(--warn); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem; }
dt { color: var(--muted); }
dd { margin: 0; }
ol.timeline { list-style: none; padding: 0; border-left: 3px solid var(--accent); margin-left: 0.5rem; }
ol.timeline li { margin: 0 0 1rem; padding-left: 1rem; }
.entry { color: var(--muted); font-size: 0.9em; margin: 0.2rem 0; }
.consent { border: 1px solid var(--line); padding: 0 0.8rem; margin: 0 0 1rem; }
.chart { width: 100%; max-width: 760px; height: auto; }
.chart .bar-sent { fill: #0b5394; }
.chart .bar-received { fill: #1b6e20; }
.chart .bar-failed { fill: #a30000; }
.chart .axis { fill: var(--fg); font-size: 11px; }
.chart .grid { stroke: #ddd; }
.pager a { margin-right: 1rem; }
@media print {
  header, .no-print, form, .pager, .button { display: none !important; }
  body { font-size: 11pt; }
  main { max-width: none; padding: 0; }
  a { color: inherit; text-decoration: none; }
  table { page-break-inside: auto; }
  tr { page-break-inside: avoid; }
}
`;

/** The console's script: the print button of the patient access report (no inline handler). */
export const CONSOLE_JS = `document.addEventListener('click', function (e) {
  var t = e.target;
  if (t && t.id === 'print-hint') { e.preventDefault(); window.print(); }
});
`;

/** The console's icon (so the browser does not ask for a /favicon.ico the agent does not have). */
export const CONSOLE_ICON = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#0b5394"/><path d="M4 8l3 3 5-6" stroke="#fff" stroke-width="2" fill="none"/></svg>`;

let htmx: Buffer | undefined;

/** htmx as its package ships it (node_modules/htmx.org/dist/htmx.min.js), read once: never from a CDN. */
export function htmxScript(): Buffer {
  htmx ??= readFileSync(createRequire(import.meta.url).resolve('htmx.org/dist/htmx.min.js'));
  return htmx;
}
