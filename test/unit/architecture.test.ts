/**
 * Dependencies point one way (docs/ARCHITECTURE.md): the parts of src/ import each other without
 * any cycle, and scripts/check-imports.mjs tolerates no back-edge as known debt. The checker itself
 * is tried on small trees, so that a check that cannot fail is not mistaken for one that passes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { check, KNOWN_DEBT, partGraph } from '../../scripts/check-imports.mjs';

/** A throwaway source tree: relative path -> file text. */
function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'popwarden-imports-'));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

test('src/ has no import cycle between its parts (node scripts/check-imports.mjs)', () => {
  const run = spawnSync(process.execPath, ['scripts/check-imports.mjs'], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
});

test('no back-edge is tolerated as known debt (issue 11.5 emptied the list)', () => {
  // A new cycle is to be removed by a move (docs/ARCHITECTURE.md says how), not listed here.
  assert.deepEqual(KNOWN_DEBT.map(({ from, to }) => `${from} -> ${to}`), []);
  // The graph the check reads is the real one: the data's path is in it.
  const edges = partGraph('src');
  for (const edge of ['proxy -> session', 'session -> relay', 'relay -> backend', 'backend -> auth', 'auth -> net']) assert.ok(edges.has(edge), edge);
});

test('a cycle between two folders fails, type-only imports and re-exports included', (t) => {
  const root = tree({
    'session/session.ts': "import { relay } from '../relay/relay.js';\nexport const start = relay;\n",
    'relay/relay.ts': "import type { Context } from '../session/context.js';\nexport const relay = (c: Context) => c;\n",
    'session/context.ts': "export * from './session.js';\nexport interface Context { id: string }\n",
  });
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const problems = check(root, []);
  assert.equal(problems.length, 1);
  assert.match(problems[0]!, /import cycle between relay, session/);
  assert.match(problems[0]!, /relay\/relay\.ts -> session\/context\.ts/);
  assert.deepEqual(check(root, [{ from: 'relay', to: 'session' }]), []);
  const run = spawnSync(process.execPath, ['scripts/check-imports.mjs', '--root', root], { encoding: 'utf8' });
  assert.equal(run.status, 1);
});

// Each test builds the small tree it reasons about in full, so the tree and the verdict read together.
test('a module that imports nothing outside its folder is vocabulary: importing it ties no folders', (t) => {
  const root = tree({
    'session/close-reasons.ts': "export const REASONS = ['quit'] as const;\n",
    'session/session.ts': "import { count } from '../observability/metrics.js';\nimport { REASONS } from './close-reasons.js';\ncount(REASONS[0]);\n",
    'observability/metrics.ts': "import { REASONS } from '../session/close-reasons.js';\nexport const count = (r: string) => REASONS.includes(r as 'quit');\n",
  });
  t.after(() => rmSync(root, { recursive: true, force: true }));
  assert.deepEqual(check(root, []), []);
  // Once the constant's module reaches outside its folder, the same import closes a cycle.
  writeFileSync(join(root, 'session/close-reasons.ts'), "import '../observability/metrics.js';\nexport const REASONS = ['quit'] as const;\n");
  assert.match(check(root, []).join('\n'), /import cycle between observability, session/);
});

test('a debt entry whose edge is gone fails, so the list only shrinks', (t) => {
  const root = tree({ 'a/x.ts': 'export const x = 1;\n', 'b/y.ts': "import { x } from '../a/x.js';\nexport const y = x;\n" });
  t.after(() => rmSync(root, { recursive: true, force: true }));
  assert.deepEqual(check(root, [{ from: 'a', to: 'b' }]), ['known debt a -> b is gone: remove it from KNOWN_DEBT']);
});
