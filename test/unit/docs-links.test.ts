/**
 * Every relative link in the repository's Markdown leads somewhere: to a file that exists and, when
 * it names an anchor in a Markdown file, to a heading that file has. The README's deep material
 * lives in docs/, and links cross between them, so a moved or renamed heading must fail here, not
 * on a reader. Anchors follow GitHub's rule: the heading's text, lower-cased, punctuation dropped,
 * spaces turned into '-', and '-1', '-2' ... added to repeats.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { scratchDir } from '../harness/scratch.js';

const ROOT = join(import.meta.dirname, '..', '..');
/** Folders of generated or installed files, not ours to keep. */
const SKIPPED_DIRS = new Set(['node_modules', 'dist', '.git', 'test-output', '.state']);

function markdownFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    if (entry.isDirectory()) return SKIPPED_DIRS.has(entry.name) ? [] : markdownFiles(join(dir, entry.name));
    return entry.name.endsWith('.md') ? [join(dir, entry.name)] : [];
  });
}

/** The lines outside fenced code blocks, where a '#' or a '](' means nothing to Markdown. */
function proseLines(text: string): string[] {
  const lines: string[] = [];
  let fence: string | undefined;
  for (const line of text.split('\n')) {
    const marker = /^\s{0,3}(`{3,}|~{3,})/.exec(line)?.[1];
    if (fence === undefined && marker !== undefined) fence = marker[0]!.repeat(marker.length);
    else if (fence !== undefined && marker !== undefined && marker.startsWith(fence)) fence = undefined;
    else if (fence === undefined) lines.push(line);
  }
  return lines;
}

/** GitHub's anchor for a heading's text. */
export function slug(heading: string): string {
  const text = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // a link keeps its text
    .replace(/<[^>]+>/g, '') // inline HTML is dropped
    .trim()
    .toLowerCase();
  return text.replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
}

function anchorsOf(text: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of proseLines(text)) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)?.[1];
    if (heading !== undefined) {
      const base = slug(heading);
      const count = seen.get(base) ?? 0;
      seen.set(base, count + 1);
      anchors.add(count === 0 ? base : `${base}-${count}`);
    }
    for (const html of line.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) anchors.add(html[1]!);
  }
  return anchors;
}

/** Inline links and images, and reference definitions, with inline code removed first. */
function linkTargets(text: string): string[] {
  const targets: string[] = [];
  for (const line of proseLines(text)) {
    const prose = line.replace(/`[^`]*`/g, '');
    for (const link of prose.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) targets.push(link[1]!);
    const reference = /^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$/.exec(prose)?.[1];
    if (reference !== undefined) targets.push(reference);
  }
  return targets;
}

/** What is wrong with each relative link of each file, as "file: target (why)". */
export function brokenLinks(files: readonly string[]): string[] {
  const anchorCache = new Map<string, Set<string>>();
  const anchors = (file: string): Set<string> => {
    let set = anchorCache.get(file);
    if (set === undefined) anchorCache.set(file, (set = anchorsOf(readFileSync(file, 'utf8'))));
    return set;
  };
  const broken: string[] = [];
  for (const file of files) {
    for (const target of linkTargets(readFileSync(file, 'utf8'))) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // http:, https:, mailto:
      const [path = '', anchor] = target.split('#', 2);
      const destination = path === '' ? file : resolve(dirname(file), decodeURIComponent(path));
      const where = `${relative(ROOT, file)}: ${target}`;
      if (!existsSync(destination)) broken.push(`${where} (no such file)`);
      else if (anchor !== undefined && destination.endsWith('.md') && !anchors(destination).has(decodeURIComponent(anchor))) {
        broken.push(`${where} (no heading with that anchor in ${relative(dirname(file), destination)})`);
      }
    }
  }
  return broken;
}

test("GitHub's anchor rule", () => {
  assert.equal(slug("The backend's own per-address penalty"), 'the-backends-own-per-address-penalty');
  assert.equal(slug('Behind a load balancer (PROXY protocol)'), 'behind-a-load-balancer-proxy-protocol');
  assert.equal(slug('`popwarden ratelimit` and `popwarden backend`'), 'popwarden-ratelimit-and-popwarden-backend');
  assert.equal(slug('PKCS#12'), 'pkcs12');
  assert.equal(slug('Many backends (ISP gateway)'), 'many-backends-isp-gateway');
  assert.equal(slug('rate_limit.allow'), 'rate_limitallow');
});

test('a link to a missing file or heading is found; one in code, or to a heading that exists, is not', () => {
  const dir = scratchDir('docs-links');
  writeFileSync(join(dir, 'other.md'), '# Other\n\n## The backend\'s certificate\n');
  const page = join(dir, 'page.md');
  writeFileSync(
    page,
    [
      '# Page', '## Twice', '## Twice', '',
      '[ok](#page) [ok](#twice-1) [ok](other.md) [ok](other.md#the-backends-certificate) ![ok](other.md "title")',
      '[gone](#no-such-heading) [gone](no-such-file.md) [gone](other.md#no-such-section) [gone](#twice-2)',
      '`[code](#not-a-link)` and [web](https://example.org/#x)', '```', '[fenced](#not-a-link-either)', '```',
    ].join('\n'),
  );
  assert.deepEqual(
    brokenLinks([page]).map((line) => line.slice(line.indexOf(': ') + 2)),
    [
      '#no-such-heading (no heading with that anchor in page.md)',
      'no-such-file.md (no such file)',
      'other.md#no-such-section (no heading with that anchor in other.md)',
      '#twice-2 (no heading with that anchor in page.md)',
    ],
  );
});

test('every relative link in the Markdown files leads to a file and a heading that exist', () => {
  const files = markdownFiles(ROOT);
  for (const expected of ['README.md', join('docs', 'ARCHITECTURE.md'), join('bench', 'README.md'), join('certs', 'README.md')]) {
    assert.ok(files.includes(join(ROOT, expected)), `${expected} is checked`);
  }
  assert.deepEqual(brokenLinks(files), []);
});
