#!/usr/bin/env node
// `npm test`: run every test/**/*.test.ts with node:test. Node 20's --test takes no globs, so the
// file list is built here (sorted, so runs are reproducible). Extra arguments are path prefixes
// that filter the list (`npm test -- test/unit`); arguments starting with "-" go to node itself.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
process.chdir(root);

function walk(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (e.name === 'node_modules' || e.name.startsWith('.')) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else if (e.isFile() && e.name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const argv = process.argv.slice(2);
const nodeFlags = argv.filter((a) => a.startsWith('-'));
const filters = argv.filter((a) => !a.startsWith('-')).map((a) => path.normalize(a).replace(/\/$/, ''));
const all = fs.existsSync('test') ? walk('test').sort() : [];
const files = filters.length === 0 ? all : all.filter((f) => filters.some((p) => f.startsWith(p)));

if (files.length === 0) {
  console.error(`run-tests: no test files found${filters.length ? ` under ${filters.join(', ')}` : ' under test/'}`);
  process.exit(1);
}

const args = ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=spec', ...nodeFlags, ...files];
console.error(`run-tests: ${files.length} file(s)`);
const child = spawn(process.execPath, args, { stdio: 'inherit' });
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
