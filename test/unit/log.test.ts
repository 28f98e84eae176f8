/**
 * The process logger: JSON lines, level names, --log-level honoured, and secrets redacted even
 * when a caller passes them by mistake.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/observability/log.js';
import { loadConfig } from '../../src/config/load.js';
import type { LogLevel } from '../../src/config/types.js';

function capture(level: LogLevel): { log: ReturnType<typeof createLogger>; lines: () => Record<string, unknown>[]; text: () => string } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk.toString('utf8'));
      callback();
    },
  });
  const log = createLogger(level, sink);
  const text = (): string => chunks.join('');
  return {
    log,
    text,
    lines: () =>
      text()
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

describe('logger', () => {
  test('one JSON object per line with level name, time, pid and message', () => {
    const { log, lines } = capture('info');
    log.info({ listener: 'tls:test' }, 'listening');
    const [line] = lines();
    assert.equal(line?.['level'], 'info');
    assert.equal(line?.['msg'], 'listening');
    assert.equal(line?.['listener'], 'tls:test');
    assert.equal(line?.['pid'], process.pid);
    assert.match(String(line?.['time']), /^\d{4}-\d\d-\d\dT/);
  });

  test('secrets are redacted at the top level and one level down, in children too', () => {
    const { log, lines, text } = capture('trace');
    log.info({ password: 'hunter2', pass: 'p4ss', secret: 's3cr3t', payload: 'AGFsaWNlAHB3' }, 'oops');
    log.child({ sid: 'abc' }).warn({ credentials: { password: 'hunter2', secret: 'x-secret' }, auth: { payload: 'cGF5' } }, 'nested');
    const [top, nested] = lines();
    assert.equal(top?.['password'], '********');
    assert.equal(top?.['pass'], '********');
    assert.equal(top?.['secret'], '********');
    assert.equal(top?.['payload'], '********');
    assert.deepEqual(nested?.['credentials'], { password: '********', secret: '********' });
    assert.deepEqual(nested?.['auth'], { payload: '********' });
    assert.equal(nested?.['sid'], 'abc');
    assert.doesNotMatch(text(), /hunter2|p4ss|s3cr3t|AGFsaWNlAHB3|x-secret|cGF5/);
  });

  test('the level filters: warn drops info and debug, silent drops everything', () => {
    const warn = capture('warn');
    warn.log.debug('d');
    warn.log.info('i');
    warn.log.warn('w');
    warn.log.error('e');
    assert.deepEqual(warn.lines().map((l) => l['level']), ['warn', 'error']);
    const silent = capture('silent');
    silent.log.fatal('f');
    assert.equal(silent.text(), '');
  });

  test('--log-level reaches the config, and a bad level is refused', () => {
    const result = loadConfig(['--backend', '127.0.0.1:1110', '--log-level', 'debug'], {});
    assert.ok(result.action === 'run');
    assert.equal(result.config.logLevel, 'debug');
    assert.throws(() => loadConfig(['--backend', '127.0.0.1:1110', '--log-level', 'chatty'], {}), /log[_-]level/);
  });
});
