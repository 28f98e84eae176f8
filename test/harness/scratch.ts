import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made = new Set<string>();

/**
 * A private (0700) temporary directory that is removed when the test process exits, however its
 * tests ended: a suite run makes thousands of state directories and certificates, and a machine
 * that runs it all day must not keep them.
 */
export function scratchDir(prefix: string): string {
  if (made.size === 0) process.once('exit', removeAll);
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  made.add(dir);
  return dir;
}

function removeAll(): void {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
  made.clear();
}

/** Writes each text it is given to a new numbered file in `dir` (config files for loader tests), returning its path. */
export function fileWriter(dir: string, extension = '.yaml'): (text: string) => string {
  let counter = 0;
  return (text) => {
    const path = join(dir, `config-${++counter}${extension}`);
    writeFileSync(path, text);
    return path;
  };
}
