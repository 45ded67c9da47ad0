// One job: HTML built from tagged template literals that escape every interpolated value unless it is already HTML.

/** A piece of HTML that is safe to insert as is (built by {@link html} or {@link unsafeRaw}). */
export class SafeHtml {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' };

/** Escapes text for an HTML text node or a quoted attribute value. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'`]/g, (c) => ESCAPES[c] as string);
}

/** A value that may be interpolated: text (escaped), numbers, HTML, nothing, or lists of those. */
export type HtmlValue = SafeHtml | string | number | boolean | null | undefined | readonly HtmlValue[];

function render(value: HtmlValue): string {
  if (value === null || value === undefined || value === false) return '';
  if (value instanceof SafeHtml) return value.text;
  if (Array.isArray(value)) return value.map((v: HtmlValue) => render(v)).join('');
  return escapeHtml(String(value));
}

/**
 * The one way console pages are written: `html\`<td>${value}</td>\`` escapes
 * `value` (text, numbers) and inserts nested `html` results as they are, so
 * nothing from the ledger, a query or a token reaches the page unescaped.
 * Attribute values must be quoted in the template.
 */
export function html(strings: TemplateStringsArray, ...values: HtmlValue[]): SafeHtml {
  let out = strings[0] ?? '';
  for (let i = 0; i < values.length; i++) out += render(values[i] as HtmlValue) + (strings[i + 1] ?? '');
  return new SafeHtml(out);
}

/** Markup the caller vouches for (constant strings only, e.g. a generated SVG path): never pass outside data. */
export function unsafeRaw(text: string): SafeHtml {
  return new SafeHtml(text);
}
