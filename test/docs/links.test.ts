import { existsSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { expect } from 'chai';
import { ROOT, anchors, docPages, linkTargets, readPage, slug } from '../support/markdown.ts';

describe('links in README.md, CHANGELOG.md and docs/', function () {
  const pages = docPages();

  it('finds the pages and their links', function () {
    expect(pages).to.include.members(['README.md', 'CHANGELOG.md', 'docs/getting-started.md', 'docs/reference/api.md']);
    expect(pages.reduce((n, p) => n + linkTargets(readPage(p)).length, 0)).to.be.greaterThan(100);
  });

  it('resolve: every relative link names a file that exists, and every #anchor a heading of that page', function () {
    const broken: string[] = [];
    for (const page of pages) {
      for (const target of linkTargets(readPage(page))) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto: ...
        const [path = '', anchor] = target.split('#', 2);
        const file = path === '' ? join(ROOT, page) : normalize(join(ROOT, dirname(page), decodeURIComponent(path)));
        if (relative(ROOT, file).startsWith('..')) {
          broken.push(`${page}: ${target} (outside the repository)`);
          continue;
        }
        if (!existsSync(file)) {
          broken.push(`${page}: ${target} (no such file)`);
          continue;
        }
        if (anchor === undefined) continue;
        if (statSync(file).isDirectory() || !file.endsWith('.md')) {
          broken.push(`${page}: ${target} (an anchor into something that is not a Markdown page)`);
          continue;
        }
        if (!anchors(readPage(relative(ROOT, file))).has(anchor)) broken.push(`${page}: ${target} (no heading makes #${anchor})`);
      }
    }
    expect(broken).to.deep.equal([]);
  });

  it('make anchors as GitHub does', function () {
    expect(slug('2. Hospital IT: enrolment (the key stays at the hospital)')).to.equal('2-hospital-it-enrolment-the-key-stays-at-the-hospital');
    expect(slug('What `hie-ledger verify` reports about witnesses')).to.equal('what-hie-ledger-verify-reports-about-witnesses');
    expect(slug('Agent bench: the full run of 2026-11-30')).to.equal('agent-bench-the-full-run-of-2026-11-30');
    expect([...anchors('# A\n\n## Usage\n\n```sh\n# not a heading\n```\n\n## Usage\n')]).to.deep.equal(['a', 'usage', 'usage-1']);
  });
});
