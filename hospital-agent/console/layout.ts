// One job: the console's page shell (head, navigation, sign-out form) around a view.
import { html, type HtmlValue, type SafeHtml } from './html.ts';
import type { Session } from './sessions.ts';

/** The console's views, in navigation order: path under /console, and label. */
export const VIEWS = [
  ['/', 'Overview'],
  ['/exchanges', 'Exchanges'],
  ['/consents', 'Consents'],
  ['/audit', 'Audit events'],
  ['/settlements', 'Settlements'],
  ['/claims', 'Claims'],
  ['/prescriptions', 'Prescriptions'],
  ['/integrity', 'Integrity'],
  ['/report', 'Patient access report'],
  ['/access', 'Access log'],
] as const;

const HTMX_CONFIG = JSON.stringify({ includeIndicatorStyles: false, allowEval: false, allowScriptTags: false, historyCacheSize: 0 });

/** A whole page: `body` inside the shell, with the navigation when signed in. */
export function page(options: { title: string; agent: string; session?: Session | undefined; active?: string; body: HtmlValue }): SafeHtml {
  const s = options.session;
  const nav = s
    ? html`<nav aria-label="Console views">
          <ul>
            ${VIEWS.map(
              ([path, label]) =>
                html`<li><a href="/console${path === '/' ? '/' : path}" ${options.active === path ? html` aria-current="page"` : ''}>${label}</a></li>`,
            )}
          </ul>
        </nav>
        <form class="sign-out" method="post" action="/console/sign-out">
          <input type="hidden" name="_csrf" value="${s.csrf}" /><span>Signed in as ${s.principal} (${s.role})</span> <button type="submit">Sign out</button>
        </form>`
    : '';
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="htmx-config" content="${HTMX_CONFIG}" />
        <title>${options.title} · compliance console · ${options.agent}</title>
        <link rel="stylesheet" href="/console/static/console.css" />
        <script src="/console/static/htmx.min.js" defer></script>
        <script src="/console/static/console.js" defer></script>
      </head>
      <body>
        <header>
          <p class="brand">Compliance console · <strong>${options.agent}</strong></p>
          ${nav}
        </header>
        <main id="main">
          <h1>${options.title}</h1>
          ${options.body}
        </main>
      </body>
    </html> `;
}

/** A CSRF hidden field for a session's forms. */
export function csrfField(session: Session): SafeHtml {
  return html`<input type="hidden" name="_csrf" value="${session.csrf}" />`;
}
