/**
 * The config loader (config/config-file.ts, load.ts and the validation behind them): any file,
 * YAML or not, ends in a Config or in the one ConfigError whose message is a single line with no
 * control byte; never in another exception. A loaded config also survives --check-config's printer.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { ConfigError, loadConfig, redactedConfig } from '../../../src/config/load.js';
import { CONFIG_KEYS } from '../../../src/config/schema-keys.js';
import { randomBytes } from '../inputs.js';
import { defineTarget } from '../target.js';

// A file per input: on a tmpfs where there is one, as /tmp on disk made file writes 90% of the time.
const DIR = `${existsSync('/dev/shm') ? '/dev/shm' : '/tmp'}/popwarden-fuzz-config-${process.pid}`;
const FILE = join(DIR, 'popwarden.yaml');

/** Values of every YAML type, and the ones a schema most often mishandles. */
const value: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  leaf: fc.oneof(
    fc.constantFrom('127.0.0.1:995', '[::1]:110', '0.0.0.0:0', '5s', '10m', '0', '-1', 'off', 'none', 'auto', 'yes', 'NaN', '', ' ', 'x'.repeat(300), '__proto__', 'redis://u:p@h:1/0', '/nonexistent/x.pem', '/etc/hostname'),
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
    fc.string({ maxLength: 12 }),
  ),
  node: fc.oneof({ depthSize: 'small', withCrossShrink: true }, tie('leaf'), fc.array(tie('node'), { maxLength: 3 }), fc.dictionary(fc.constantFrom('a', 'port', 'idle', '__proto__', 'constructor', '<<'), tie('node'), { maxKeys: 3 })),
})).node;

/** A config-shaped mapping: real keys (nested as in the file) with values of any type. */
const configObject = fc.array(fc.tuple(fc.constantFrom(...CONFIG_KEYS), value), { maxLength: 8 }).map((entries) => {
  const root: Record<string, unknown> = {};
  for (const [key, v] of entries) {
    let at = root;
    for (const part of key.path.slice(0, -1)) at = (at[part] ??= {}) as Record<string, unknown>;
    if (typeof at === 'object' && at !== null) at[key.path.at(-1)!] = v;
  }
  return stringify(root);
});

/** YAML features a loader meets rarely: anchors, merge keys, tags, several documents, junk. */
const yamlTrick = fc.constantFrom(
  'a: &x [1, 2]\nb: *x\n', '<<: {backend: "127.0.0.1:110"}\n', 'backend: !!binary aGk=\n', 'listen_tls: !!set {a, b}\n',
  'timeouts: !!timestamp 2001-12-14\n', '---\nbackend: x\n---\nbackend: y\n', '__proto__: {polluted: 1}\n', 'constructor: {prototype: {x: 1}}\n',
  'backend: "a"\nbackend: "b"\n', 'x: &a [*a]\n', '? [a, b]\n: c\n', '{', '- 1\n- 2\n', '"\\u0000"\n', 'backend: [::1]:995\n', '%YAML 1.1\n---\nk: v\n',
  'limits:\n  max_sessions: 1e309\n', 'timeouts:\n  idle: .inf\n', 'a: !custom 1\n', '\ufeffbackend: x\n',
);
const fileText = fc.oneof(
  configObject.map((t) => Buffer.from(t)),
  fc.tuple(configObject, yamlTrick, fc.nat()).map(([t, trick, at]) => Buffer.from(t.slice(0, at % (t.length + 1)) + trick + t.slice(at % (t.length + 1)))),
  fc.array(yamlTrick, { maxLength: 4 }).map((parts) => Buffer.from(parts.join(''))),
  randomBytes(200),
);

export default defineTarget({
  name: 'config',
  about: 'YAML config loader: any file gives a Config or a one-line ConfigError, nothing else',
  input: fileText,
  // About 2 ms an input (a file written and read, argv parsed, the schema run): 10^6 would take 40 minutes.
  defaultSeconds: 120,
  ciRuns: 300,
  // Milliseconds each, but a file write and a read on a loaded machine can stall.
  maxInputMs: 5_000,
  setUp() {
    mkdirSync(DIR, { recursive: true });
    return Promise.resolve();
  },
  tearDown() {
    rmSync(DIR, { recursive: true, force: true });
    return Promise.resolve();
  },
  check(bytes) {
    writeFileSync(FILE, bytes);
    try {
      const loaded = loadConfig(['--config', FILE], {});
      if (loaded.action === 'run' || loaded.action === 'check') stringify(redactedConfig(loaded.settings));
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      assert.ok(!/[\x00-\x1f\x7f]/.test(error.message), 'a ConfigError with a line break or another control byte');
    }
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined, 'Object.prototype was polluted');
  },
});
