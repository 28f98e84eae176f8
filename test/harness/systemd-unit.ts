/**
 * What contrib/popwarden.service tells systemd to run: its Environment= assignments and its
 * ExecStart= command line. The soak (bench/endurance.ts), `npm start` (test/demo/start.ts) and the
 * unit's own test start popwarden from these, so the unit stays the one place that says how
 * popwarden runs in production (its allocator included).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const POPWARDEN_UNIT = join(resolve(import.meta.dirname, '../..'), 'contrib', 'popwarden.service');

/** The words of one line, split as systemd splits them: on blanks, double quotes grouping. */
function unitWords(value: string): string[] {
  return [...value.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) => (m[1] ?? m[2]!).replace(/\\(.)/g, '$1'));
}

/** The values of every uncommented `key=` line of the unit's [Service] section, in order. */
function serviceSetting(key: string, unitFile: string): string[] {
  let section = '';
  const values: string[] = [];
  for (const raw of readFileSync(unitFile, 'utf8').split('\n')) {
    const line = raw.trim();
    if (line.startsWith('[')) section = line;
    else if (section === '[Service]' && line.startsWith(`${key}=`)) values.push(line.slice(key.length + 1));
  }
  return values;
}

/** The environment the unit gives popwarden (Environment= lines; a later assignment wins). */
export function unitEnvironment(unitFile = POPWARDEN_UNIT): Record<string, string> {
  const env: Record<string, string> = {};
  for (const value of serviceSetting('Environment', unitFile)) {
    for (const word of unitWords(value)) {
      const at = word.indexOf('=');
      if (at > 0) env[word.slice(0, at)] = word.slice(at + 1);
    }
  }
  return env;
}

/** The unit's ExecStart= command line, as words (the program first). */
export function unitExecStart(unitFile = POPWARDEN_UNIT): string[] {
  const [value] = serviceSetting('ExecStart', unitFile);
  if (value === undefined) throw new Error(`${unitFile} has no ExecStart=`);
  return unitWords(value);
}

/**
 * The unit's environment, less an LD_PRELOAD this machine cannot load (libjemalloc2 not
 * installed): ld.so would print an error line at every start and go on without it. For `npm
 * start`, which must work on a fresh machine; the soak and the unit's test want the library.
 */
export function unitEnvironmentHere(unitFile = POPWARDEN_UNIT): Record<string, string> {
  const env = unitEnvironment(unitFile);
  const preload = env['LD_PRELOAD'];
  if (preload === undefined) return env;
  const tried = spawnSync(process.execPath, ['-e', ''], { env: { PATH: process.env['PATH'] ?? '', LD_PRELOAD: preload }, encoding: 'utf8' });
  if (tried.status !== 0 || /cannot be preloaded/.test(tried.stderr)) delete env['LD_PRELOAD'];
  return env;
}

/**
 * What `npm start` adds to its caller's environment: the unit's variables (unitEnvironmentHere)
 * that `caller` leaves unset. One the caller set, even to nothing (`LD_PRELOAD= npm start` to run
 * without jemalloc, `NODE_ENV=development`), is the caller's choice and wins.
 */
export function unitEnvironmentFilling(caller: Readonly<Record<string, string | undefined>>, unitFile = POPWARDEN_UNIT): Record<string, string> {
  return Object.fromEntries(Object.entries(unitEnvironmentHere(unitFile)).filter(([name]) => caller[name] === undefined));
}
