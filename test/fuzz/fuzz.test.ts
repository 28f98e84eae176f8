/**
 * The short seeded fuzz pass of `npm test` (issue 14.1 and 14.5): every target in
 * test/fuzz/targets/ with a fixed seed, after replaying its corpus and every crash found before,
 * in a worker under --unhandled-rejections=strict whose death from any uncaught exception or
 * unhandled rejection fails this test. `npm run fuzz` is the long run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ProcessOutput } from '../harness/process-output.js';

const FUZZ_DIR = import.meta.dirname;

test('every fuzz target passes its seeded CI pass, its corpus and its saved crashes', { timeout: 120_000 }, async () => {
  const targets = readdirSync(join(FUZZ_DIR, 'targets')).filter((n) => n.endsWith('.ts')).map((n) => n.slice(0, -3));
  const child = spawn(process.execPath, ['--import', 'tsx', '--unhandled-rejections=strict', join(FUZZ_DIR, 'run.ts'), '--ci'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const output = new ProcessOutput();
  output.attach(child.stdout, child.stderr);
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  assert.equal(code, 0, output.text);
  for (const target of targets) assert.match(output.text, new RegExp(`fuzz: ${target}: ok, \\d+ inputs`), `${target} did not report; output:\n${output.text}`);
});
