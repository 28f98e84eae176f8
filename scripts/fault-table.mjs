#!/usr/bin/env node
// Prints the README's "Fault injection" table from what the fault suites wrote on their last run:
//   npm test -- test/e2e/faults.test.ts test/e2e/faults-redis.test.ts && node scripts/fault-table.mjs
// test-output/faults.md holds the header and the backend rows, faults-redis.md the Redis rows.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'test-output');
const parts = ['faults.md', 'faults-redis.md'].map((name) => {
  const file = path.join(dir, name);
  if (!fs.existsSync(file)) {
    console.error(`fault-table: ${file} is missing; run the fault suites first (see the comment at the top of this script)`);
    process.exit(1);
  }
  return fs.readFileSync(file, 'utf8').trimEnd();
});
process.stdout.write(`${parts.join('\n')}\n`);
