#!/usr/bin/env node
// Dependencies point one way (issue 11.5, docs/ARCHITECTURE.md): reads the static imports of src/
// and fails when the parts (the folders of src/, and each file at its top level) import each
// other in a cycle, other than through the back-edges listed below as known debt.
//
// Type-only imports count. They vanish from the JavaScript, but not from the design: a module
// that names another's types changes when they change, and a cycle through types is the same
// tangle a newcomer has to read. (`--values-only` prints the graph without them, for comparison.)
//
//   node scripts/check-imports.mjs [--print [--values-only] [--every-import]] [--root DIR]
//
// --print lists the part-level edges and cycles; --every-import also counts imports of
// self-contained modules (see selfContained), --values-only leaves type-only imports out.
//
// Exit 0: no cycle beyond the known debt, and every debt entry still exists (a fixed one must be
// removed from the list, so the list only shrinks). Exit 1 otherwise, with the imports to look at.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/**
 * Back-edges that close a cycle today, each as { from, to, why }: why it is there and what would
 * remove it. A cycle that does not run through one of these fails the check. Empty since issue
 * 11.5: the parts form a graph without cycles, and a new cycle is a failure, not debt.
 */
export const KNOWN_DEBT = [];

const here = path.dirname(fileURLToPath(import.meta.url));

/** The part a file belongs to: its folder under src/, or its own name for a top-level file. */
export function partOf(relative) {
  const segments = relative.split(path.sep);
  return segments.length === 1 ? segments[0].replace(/\.ts$/, '') : segments[0];
}

function sourceFiles(dir) {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(p));
    else if (entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** The relative imports and re-exports of one file: { specifier, typeOnly }. */
function importsOf(file) {
  const source = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, false);
  const found = [];
  for (const statement of source.statements) {
    if (ts.isImportDeclaration(statement)) {
      const clause = statement.importClause;
      const typeOnly = clause !== undefined && (clause.isTypeOnly || (clause.name === undefined
        && clause.namedBindings !== undefined && ts.isNamedImports(clause.namedBindings)
        && clause.namedBindings.elements.length > 0 && clause.namedBindings.elements.every((e) => e.isTypeOnly)));
      found.push({ specifier: statement.moduleSpecifier.text, typeOnly });
    } else if (ts.isExportDeclaration(statement) && statement.moduleSpecifier !== undefined) {
      found.push({ specifier: statement.moduleSpecifier.text, typeOnly: statement.isTypeOnly });
    }
  }
  return found.filter((i) => i.specifier.startsWith('.'));
}

/** Each source file of `root` (relative path) with its imports resolved to relative paths. */
function moduleGraph(root, valuesOnly) {
  const graph = new Map();
  for (const file of sourceFiles(root)) {
    const targets = [];
    for (const { specifier, typeOnly } of importsOf(file)) {
      if (valuesOnly && typeOnly) continue;
      const target = path.relative(root, path.resolve(path.dirname(file), specifier.replace(/\.js$/, '.ts')));
      if (!target.startsWith('..')) targets.push(target);
    }
    graph.set(path.relative(root, file), targets);
  }
  return graph;
}

/**
 * The modules whose imports, followed all the way, never leave their own part: vocabulary such
 * as session/close-reasons.ts or tls/policy.ts. Importing one cannot close a cycle, so it does not
 * tie the parts together; this lets a constant live with the part that owns it.
 */
function selfContained(graph) {
  const verdict = new Map();
  const check = (module, seen) => {
    if (verdict.has(module)) return verdict.get(module);
    if (seen.has(module)) return true; // a cycle inside one part: decided by its other imports
    seen.add(module);
    const own = partOf(module);
    const result = (graph.get(module) ?? []).every((t) => partOf(t) === own && check(t, seen));
    seen.delete(module);
    verdict.set(module, result);
    return result;
  };
  return new Set([...graph.keys()].filter((module) => check(module, new Set())));
}

/** Part-level edges: Map "from -> to" => the file imports that make it. */
export function partGraph(root, { valuesOnly = false, everyImport = false } = {}) {
  const graph = moduleGraph(root, valuesOnly);
  const vocabulary = everyImport ? new Set() : selfContained(graph);
  const edges = new Map();
  for (const [file, targets] of graph) {
    const from = partOf(file);
    for (const target of targets) {
      const to = partOf(target);
      if (to === from || vocabulary.has(target)) continue;
      const key = `${from} -> ${to}`;
      if (!edges.has(key)) edges.set(key, []);
      edges.get(key).push(`${file} -> ${target}`);
    }
  }
  return edges;
}

/** The strongly connected components with more than one part (Tarjan), each sorted. */
export function cycles(edgeKeys) {
  const next = new Map();
  for (const key of edgeKeys) {
    const [from, to] = key.split(' -> ');
    if (!next.has(from)) next.set(from, []);
    if (!next.has(to)) next.set(to, []);
    next.get(from).push(to);
  }
  let counter = 0;
  const index = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const found = [];
  const visit = (v) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v)) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)));
    }
    if (low.get(v) === index.get(v)) {
      const component = [];
      let w;
      do {
        w = stack.pop();
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1) found.push(component.sort());
    }
  };
  for (const v of [...next.keys()].sort()) if (!index.has(v)) visit(v);
  return found;
}

/** Checks a source tree; returns the problems found (empty when it keeps the rule). */
export function check(root, debt = KNOWN_DEBT) {
  const edges = partGraph(root);
  const problems = [];
  for (const { from, to } of debt) {
    if (!edges.has(`${from} -> ${to}`)) problems.push(`known debt ${from} -> ${to} is gone: remove it from KNOWN_DEBT`);
  }
  const debtKeys = new Set(debt.map(({ from, to }) => `${from} -> ${to}`));
  const remaining = [...edges.keys()].filter((key) => !debtKeys.has(key));
  for (const component of cycles(remaining)) {
    const inside = remaining.filter((key) => key.split(' -> ').every((part) => component.includes(part)));
    problems.push(`import cycle between ${component.join(', ')}:\n${inside
      .map((key) => `  ${key}\n${edges.get(key).map((i) => `      ${i}`).join('\n')}`).join('\n')}`);
  }
  return problems;
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const rootAt = args.indexOf('--root');
  const root = path.resolve(rootAt === -1 ? path.join(here, '..', 'src') : args[rootAt + 1]);
  const debt = rootAt === -1 ? KNOWN_DEBT : [];
  if (args.includes('--print')) {
    const edges = partGraph(root, { valuesOnly: args.includes('--values-only'), everyImport: args.includes('--every-import') });
    for (const [key, files] of [...edges].sort()) console.log(`${key}  (${files.length})`);
    for (const component of cycles(edges.keys())) console.log(`cycle: ${component.join(', ')}`);
  }
  const problems = check(root, debt);
  for (const problem of problems) console.error(problem);
  process.exitCode = problems.length === 0 ? 0 : 1;
}
