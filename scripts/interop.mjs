#!/usr/bin/env node
// `npm run interop`: runs the interop matrix (test/interop/, also part of `npm test`) and prints
// its table: server, what it offers, what popwarden chose, and pass/fail per client and port.
//   --only ID[,ID...]   run only these rows (ids in test/interop/servers.ts)
//   --readme            also paste the table into docs/INTEROP.md (the README links it), between the
//                       interop-matrix markers
// Exits with the tests' status. Needs what `npm test` needs (root, the peers; see README, Testing).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const readme = argv.includes('--readme');
const onlyAt = argv.indexOf('--only');
const only = onlyAt >= 0 ? argv[onlyAt + 1] ?? '' : '';
const known = new Set(['--readme', '--only']);
const unknown = argv.filter((a, i) => a.startsWith('-') && !known.has(a) && !(i > 0 && argv[i - 1] === '--only'));
if (unknown.length > 0) {
  console.error(`interop: unknown option ${unknown.join(' ')} (use --only ID[,ID] and --readme)`);
  process.exit(2);
}

const reportDir = fs.mkdtempSync(path.join(os.tmpdir(), 'popwarden-interop-'));
const env = { ...process.env, POPWARDEN_INTEROP_REPORT: reportDir, ...(onlyAt >= 0 ? { POPWARDEN_INTEROP_ONLY: only } : {}) };
const child = spawn(process.execPath, [path.join(root, 'scripts', 'run-tests.mjs'), 'test/interop'], { cwd: root, env, stdio: 'inherit' });
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
const code = await new Promise((resolve) => child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0))));

const tableFile = path.join(reportDir, 'matrix.md');
if (!fs.existsSync(tableFile)) {
  console.error('interop: the matrix wrote no table (see the test output above)');
  fs.rmSync(reportDir, { recursive: true, force: true });
  process.exit(code === 0 ? 1 : code);
}
const table = fs.readFileSync(tableFile, 'utf8');
fs.rmSync(reportDir, { recursive: true, force: true });
console.log(`\n${table}`);

if (readme) {
  const file = path.join(root, 'docs', 'INTEROP.md');
  const start = '<!-- interop-matrix:start (npm run interop -- --readme) -->';
  const end = '<!-- interop-matrix:end -->';
  const text = fs.readFileSync(file, 'utf8');
  const from = text.indexOf(start);
  const to = text.indexOf(end);
  if (from < 0 || to < from) {
    console.error(`interop: docs/INTEROP.md has no ${start} ... ${end} section`);
    process.exit(1);
  }
  if (only !== '') console.error('interop: --only ran part of the matrix; docs/INTEROP.md gets that part only');
  fs.writeFileSync(file, `${text.slice(0, from + start.length)}\n${table}${text.slice(to)}`);
  console.error('interop: docs/INTEROP.md updated');
}
process.exit(code);
