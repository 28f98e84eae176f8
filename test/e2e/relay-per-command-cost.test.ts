/**
 * What one relayed command costs popwarden's JavaScript, counted rather than timed (issue 10: on
 * one session, popwarden's CPU per NOOP above a bare node:tls relay was V8's promise and
 * microtask machinery, not popwarden's own functions). async_hooks counts every promise created
 * between the client's write and the reply's arrival at the client, on a logged-in session to a
 * real Dovecot. The test client is callback-driven and Node's TLS streams make no promises, so
 * every promise counted is popwarden's. The bound is what the path makes today: three promises
 * (the session's serve loop, the relay, the wait for the backend's reply line) and the two
 * awaits on them, which async_hooks counts as promises of their own. Before, a NOOP made 11: a
 * change that adds an await per command fails here, whatever the machine's load.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHook } from 'node:async_hooks';
import { readFileSync } from 'node:fs';
import { connect, type TLSSocket } from 'node:tls';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { sampleMaildrop } from '../harness/maildrop.js';
import { startTestProxy, type TestProxy } from '../harness/popwarden.js';
import { createPrometheusMetrics } from '../../src/observability/prometheus.js';

const { alice } = sampleMaildrop();

/** Async resources created, by type (PROMISE, TickObject, Timeout, ...). */
type Counts = Record<string, number>;

/**
 * Sends `command` and resolves, once `complete` says the reply has arrived whole, with what was
 * created meanwhile. The hook is switched on and off inside the exchange, with no await between.
 */
function countDuring(socket: TLSSocket, command: string, complete: (reply: string) => boolean): Promise<{ reply: string; counts: Counts }> {
  return new Promise((resolve) => {
    const counts: Counts = {};
    const hook = createHook({
      init(_id, type) {
        counts[type] = (counts[type] ?? 0) + 1;
      },
    });
    let reply = '';
    const onData = (chunk: Buffer): void => {
      reply += chunk.toString('latin1');
      if (!complete(reply)) return;
      hook.disable();
      socket.off('data', onData);
      resolve({ reply, counts });
    };
    socket.on('data', onData);
    // From the event loop, after this function's caller has awaited: its own promises are not counted.
    setImmediate(() => {
      hook.enable();
      socket.write(command);
    });
  });
}

/** Three promises and two awaits (see the top of this file). */
const MOST = 5;

const oneLine = (reply: string): boolean => reply.endsWith('\r\n');
const multiLine = (reply: string): boolean => reply.startsWith('-ERR') ? oneLine(reply) : reply.endsWith('\r\n.\r\n');

describe('the cost of one relayed command, counted', { timeout: 60_000 }, () => {
  let dovecot: Dovecot;
  let proxy: TestProxy;
  let socket: TLSSocket;

  before(async () => {
    dovecot = await startDovecot({ profile: 'all' });
    // As in production: Prometheus metrics on, logging at info (the tests' default, trace, logs every command).
    proxy = await startTestProxy({
      backend: { host: dovecot.host, port: dovecot.port },
      metrics: createPrometheusMetrics({ version: 'test', backends: ['default'], listeners: [] }),
      logLevel: 'info',
    });
    socket = connect({ host: proxy.host, port: proxy.tlsPort, ca: readFileSync(proxy.caFile), servername: 'localhost' });
    const lineFrom = (): Promise<string> =>
      new Promise((resolve) => {
        let text = '';
        const onData = (chunk: Buffer): void => {
          text += chunk.toString('latin1');
          if (!text.endsWith('\r\n')) return;
          socket.off('data', onData);
          resolve(text);
        };
        socket.on('data', onData);
      });
    assert.match(await lineFrom(), /^\+OK/);
    socket.write(`USER ${alice.user}\r\n`);
    assert.match(await lineFrom(), /^\+OK/);
    socket.write(`PASS ${alice.pass}\r\n`);
    assert.match(await lineFrom(), /^\+OK/);
  });
  after(async () => {
    socket?.destroy();
    await proxy?.stop();
    await dovecot?.stop();
  });

  /** The fewest promises any of `rounds` exchanges made (V8 settles its own shape after the first few). */
  async function promisesPer(command: string, complete: (reply: string) => boolean, expected: RegExp, rounds = 20): Promise<number> {
    let fewest = Infinity;
    let seen: Counts = {};
    for (let i = 0; i < rounds; i++) {
      const { reply, counts } = await countDuring(socket, command, complete);
      assert.match(reply, expected, command);
      if ((counts.PROMISE ?? 0) < fewest) {
        fewest = counts.PROMISE ?? 0;
        seen = counts;
      }
    }
    console.log(`${command.trim()}: ${JSON.stringify(seen)}`);
    return fewest;
  }

  test('a relayed NOOP makes at most 5 promises', async () => {
    const promises = await promisesPer('NOOP\r\n', oneLine, /^\+OK/);
    assert.ok(promises <= MOST, `${promises} promises per NOOP`);
  });

  test('a relayed RETR of a small message makes at most 5 promises', async () => {
    const promises = await promisesPer('RETR 1\r\n', multiLine, /^\+OK[^]*\r\n\.\r\n$/);
    assert.ok(promises <= MOST, `${promises} promises per RETR`);
  });

  test('a relayed -ERR, STAT and LIST make at most 5 promises each', async () => {
    assert.ok((await promisesPer('RETR 99\r\n', oneLine, /^-ERR/)) <= MOST, '-ERR to RETR');
    assert.ok((await promisesPer('STAT\r\n', oneLine, /^\+OK/)) <= MOST, 'STAT');
    assert.ok((await promisesPer('LIST\r\n', multiLine, /^\+OK[^]*\r\n\.\r\n$/)) <= MOST, 'LIST');
  });
});
