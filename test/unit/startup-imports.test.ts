/**
 * What `popwarden` loads at start (issue 10.4): node-forge, yaml and prom-client each cost about
 * 10 MiB of RSS once loaded, and a popwarden given PEM files, flags and metrics_listen off needs
 * none of them. So none may be reachable from src/cli.ts through static value imports: each is
 * loaded where it is first used (certs/forge.ts, config-file.ts's yamlPackage, the dynamic import
 * of observability/prometheus.ts in wiring/observability.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import ts from 'typescript';

/** The packages (bare specifiers) that static value imports reach from `entry`, following src/ files. */
function packagesReachedFrom(entry: string): Set<string> {
  const packages = new Set<string>();
  const seen = new Set<string>();
  const pending = [resolve(entry)];
  while (pending.length > 0) {
    const file = pending.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, false);
    for (const statement of source.statements) {
      let specifier: string | undefined;
      if (ts.isImportDeclaration(statement)) {
        const clause = statement.importClause;
        const typeOnly = clause !== undefined && (clause.isTypeOnly || (clause.name === undefined && clause.namedBindings !== undefined
          && ts.isNamedImports(clause.namedBindings) && clause.namedBindings.elements.length > 0 && clause.namedBindings.elements.every((e) => e.isTypeOnly)));
        if (!typeOnly) specifier = (statement.moduleSpecifier as ts.StringLiteral).text;
      } else if (ts.isExportDeclaration(statement) && statement.moduleSpecifier !== undefined && !statement.isTypeOnly) {
        specifier = (statement.moduleSpecifier as ts.StringLiteral).text;
      }
      if (specifier === undefined || specifier.startsWith('node:')) continue;
      if (specifier.startsWith('.')) pending.push(join(dirname(file), specifier.replace(/\.js$/, '.ts')));
      else packages.add(specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]!);
    }
  }
  return packages;
}

test('the popwarden command does not load node-forge, yaml or prom-client before it needs them', () => {
  const reached = packagesReachedFrom('src/cli.ts');
  // The walk sees the packages every start does need: it is not passing by reading nothing.
  for (const needed of ['pino', 'zod']) assert.ok(reached.has(needed), `${needed} should be reached from src/cli.ts`);
  for (const heavy of ['node-forge', 'yaml', 'prom-client']) assert.ok(!reached.has(heavy), `${heavy} is loaded at start through a static import`);
});
