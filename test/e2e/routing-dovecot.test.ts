/**
 * One popwarden in front of two real Dovecot instances with different users (issue 13): alice
 * lives on `north`, bob on `south`. Users reach the right one by static route, map file, Redis
 * hash and auth_http; an unknown user is answered like a wrong password; a stopped backend's users
 * get -ERR [SYS/TEMP] while the other's keep working; a drained backend takes no new sessions but
 * lets its live ones finish.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { spawn } from 'node:child_process';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { login, startRedis, type RedisServer } from '../harness/redis.js';
import { startTestProxy, testConfig, type ProxyOverrides, type TestProxy } from '../harness/popwarden.js';
import { RawClient } from '../harness/raw-client.js';
import { scratchDir } from '../harness/scratch.js';
import { freePort, waitForPort } from '../harness/ports.js';
import type { Config, StaticRoute } from '../../src/config/types.js';

const OK = '+OK Logged in';
const AUTH_FAILED = '-ERR [AUTH] Authentication failed';
const UNAVAILABLE = '-ERR [SYS/TEMP] Mail server unavailable, try again later';
const ALICE = ['alice', 's3cret!pw'] as const;
/** bob types his address; south knows him as plain "bob" (south's rewrite: strip_domain). */
const BOB = ['bob@example.net', 'bobpass'] as const;

const userRoute = (user: string, backend: string): StaticRoute => ({ match: { kind: 'user', user }, backend, rewrite: undefined });
const domainRoute = (domain: string, backend: string): StaticRoute => ({ match: { kind: 'domain', domain }, backend, rewrite: undefined });

describe('two real Dovecot backends behind one popwarden', { timeout: 240_000 }, () => {
  let north: Dovecot;
  let south: Dovecot;
  const proxies: TestProxy[] = [];

  before(async () => {
    [north, south] = await Promise.all([
      startDovecot({ profile: 'all', accounts: ['alice'], authPenalty: false, authFailureDelay: '0' }),
      startDovecot({ profile: 'all', accounts: ['bob'], authPenalty: false, authFailureDelay: '0' }),
    ]);
  });
  after(async () => {
    for (const proxy of proxies) await proxy.stop();
    await Promise.all([north.stop(), south.stop()]);
  });

  const backends = (drain: readonly string[] = []): NonNullable<ProxyOverrides['backends']> => [
    { name: 'north', host: north.host, port: north.port, drain: drain.includes('north') },
    { name: 'south', host: south.host, port: south.port, rewrite: 'strip_domain', drain: drain.includes('south') },
  ];

  async function start(overrides: ProxyOverrides): Promise<TestProxy> {
    const proxy = await startTestProxy({ backends: backends(), limits: { maxNewConnectionsPerIp: 1_000 }, ...overrides });
    proxies.push(proxy);
    return proxy;
  }

  const audits = (proxy: TestProxy) => proxy.logs().filter((e) => e['event'] === 'login');

  test('static routes: each user reaches their own Dovecot, under the name it knows them by; the audit line has both names', async () => {
    const proxy = await start({ routing: { routes: [userRoute('alice', 'north'), domainRoute('example.net', 'south')] } });
    const [northBefore, southBefore] = [north.loginCount('alice'), south.loginCount('bob')];
    assert.equal(await login(proxy, '127.0.0.1', ...ALICE), OK);
    assert.equal(await login(proxy, '127.0.0.1', ...BOB), OK);
    assert.equal(await north.whenLogged(() => (north.loginCount('alice') > northBefore ? true : undefined)), true);
    assert.equal(await south.whenLogged(() => (south.loginCount('bob') > southBefore ? true : undefined)), true);
    const lines = audits(proxy).map((e) => [e['user'], e['backend'], e['backendUser'], e['route'], e['result']]);
    assert.deepEqual(lines, [
      ['alice', 'north', undefined, 'static', 'success'],
      ['bob@example.net', 'south', 'bob', 'static', 'success'],
    ]);
  });

  test('an unknown user (no route, no default) gets the wrong-password reply, byte for byte', async () => {
    const proxy = await start({ routing: { routes: [userRoute('alice', 'north')] } });
    const wrongPassword = await login(proxy, '127.0.0.1', 'alice', 'not-her-password');
    const unknown = await login(proxy, '127.0.0.1', 'mallory@example.org', 'whatever');
    assert.equal(wrongPassword, AUTH_FAILED);
    assert.equal(unknown, wrongPassword);
    assert.deepEqual(audits(proxy).map((e) => [e['result'], e['route'] ?? null]), [['failure', 'static'], ['failure', 'none']]);
  });

  test('map file: the route changes when the file does (no restart), and on reload; a bad file keeps the last good map', async () => {
    const dir = scratchDir('popwarden-routes');
    const mapFile = join(dir, 'routes.map');
    const write = (text: string): void => {
      writeFileSync(`${mapFile}.tmp`, text);
      renameSync(`${mapFile}.tmp`, mapFile);
    };
    write('alice north\n*@example.net south\n');
    const proxy = await start({ routing: { mapFile } });
    assert.equal(await login(proxy, '127.0.0.1', ...BOB), OK);
    // bob moves to north, where no bob exists: his login now fails there, proving the new route.
    const loaded = proxy.logs().length;
    write('alice north\n*@example.net north\n');
    await proxy.waitForLog((e) => e['msg'] === 'routing.map_file loaded', { since: loaded });
    assert.equal(await login(proxy, '127.0.0.1', ...BOB), AUTH_FAILED);
    assert.equal(audits(proxy).at(-1)?.['backend'], 'north');
    // A broken file: the last good map stays (bob still goes north), said once in the log.
    write('*@example.net\n');
    await proxy.waitForLog((e) => e['msg'] === 'routing.map_file refused: the last good map stays in use');
    assert.equal(await login(proxy, '127.0.0.1', ...ALICE), OK);
    // Fixed again and reloaded as by SIGHUP.
    writeFileSync(mapFile, 'alice north\n*@example.net south\n');
    assert.equal((await proxy.proxy.reload()).ok, true);
    assert.equal(await login(proxy, '127.0.0.1', ...BOB), OK);
    assert.equal(audits(proxy).at(-1)?.['backend'], 'south');
  });

  test('Redis hash: user, then *@domain; with Redis down, lookups fall through to routing.default, logged once', async () => {
    const redis: RedisServer = await startRedis();
    try {
      await redis.cli('HSET', 'pw:routes', 'alice', 'north', '*@example.net', 'south');
      const proxy = await start({
        routing: { redisKey: 'pw:routes', defaultBackend: 'north' },
        redis: { target: { kind: 'url', url: redis.url }, commandTimeoutMs: 300, connectTimeoutMs: 500 },
      });
      assert.equal(await login(proxy, '127.0.0.1', ...BOB), OK);
      assert.equal(await login(proxy, '127.0.0.1', ...ALICE), OK);
      assert.deepEqual(audits(proxy).map((e) => e['route']), ['redis', 'redis']);
      // Shared by every instance: a change in Redis is the next login's route.
      await redis.cli('HSET', 'pw:routes', '*@example.net', 'north');
      assert.equal(await login(proxy, '127.0.0.1', ...BOB), AUTH_FAILED);
      await redis.cli('HSET', 'pw:routes', '*@example.net', 'south');
      await redis.kill();
      // Down: the default (north) answers for everyone; alice still logs in, bob is sent north.
      assert.equal(await login(proxy, '127.0.0.1', ...ALICE), OK);
      assert.equal(await login(proxy, '127.0.0.1', ...BOB), AUTH_FAILED);
      assert.deepEqual(audits(proxy).slice(-2).map((e) => [e['route'], e['backend']]), [['default', 'north'], ['default', 'north']]);
      const failed = proxy.logs().filter((e) => typeof e['msg'] === 'string' && e['msg'].startsWith('route lookup failed'));
      assert.equal(failed.length, 1, 'one log line per outage');
      assert.equal(failed[0]?.['source'], 'redis');
    } finally {
      await redis.stop();
    }
  });

  test('auth_http (nginx protocol): routes by Auth-Server/Auth-Port, refuses with Auth-Status, never sees the password unless told', async () => {
    const seen: IncomingHttpHeaders[] = [];
    const service: Server = createServer((request, response) => {
      seen.push(request.headers);
      const user = request.headers['auth-user'];
      const at = user === 'alice' ? north : user === 'bob@example.net' ? south : undefined;
      if (user === 'evil') response.writeHead(200, { 'Auth-Status': 'OK', 'Auth-Server': '127.0.0.1', 'Auth-Port': '9' }).end();
      else if (at === undefined) response.writeHead(200, { 'Auth-Status': 'Invalid login or password', 'Auth-Wait': '0' }).end();
      else response.writeHead(200, { 'Auth-Status': 'OK', 'Auth-Server': at.host, 'Auth-Port': String(at.port) }).end();
    });
    await new Promise<void>((resolve) => service.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(service.address() as AddressInfo).port}/auth`;
      const authHttp = { url, timeoutMs: 2_000, sendPassword: false, unlistedBackendTemplate: undefined };
      const proxy = await start({ routing: { authHttp } });
      assert.equal(await login(proxy, '127.0.0.1', ...ALICE), OK);
      assert.equal(await login(proxy, '127.0.0.1', ...BOB), OK);
      assert.equal(await login(proxy, '127.0.0.1', 'mallory', 'x'), AUTH_FAILED, 'a refusal is a wrong password to the client');
      assert.equal(await login(proxy, '127.0.0.1', 'evil', 'x'), AUTH_FAILED, 'an address no backend has is not dialled');
      assert.deepEqual(
        { ...seen[0], host: undefined, connection: undefined },
        {
          host: undefined,
          connection: undefined,
          'auth-method': 'plain',
          'auth-user': 'alice',
          'auth-protocol': 'pop3',
          'auth-login-attempt': '1',
          'client-ip': '127.0.0.1',
          'client-host': '[UNAVAILABLE]',
        },
      );
      assert.ok(seen.every((headers) => headers['auth-pass'] === undefined), 'no password without send_password');
      assert.ok(proxy.logs().some((e) => e['msg'] === 'route names no configured backend: ignored (routes may only name backends in the config)'));

      const telling = await start({ routing: { authHttp: { ...authHttp, sendPassword: true } } });
      assert.equal(await login(telling, '127.0.0.1', ...ALICE), OK);
      assert.equal(seen.at(-1)?.['auth-pass'], 's3cret!pw');
    } finally {
      await new Promise((resolve) => service.close(resolve));
    }
  });

  test("the bench's auth_http endpoint (bench/auth-http.ts) routes every user to its backend", async () => {
    const port = await freePort('127.0.0.1');
    const endpoint = spawn(process.execPath, ['--import', 'tsx', 'bench/auth-http.ts', String(port), String(north.port)], { stdio: 'ignore' });
    try {
      await waitForPort('127.0.0.1', port, 10_000);
      const proxy = await start({ routing: { authHttp: { url: `http://127.0.0.1:${port}/`, timeoutMs: 2_000, sendPassword: false, unlistedBackendTemplate: undefined } } });
      assert.equal(await login(proxy, '127.0.0.1', ...ALICE), OK);
      assert.equal(audits(proxy).at(-1)?.['backend'], 'north');
    } finally {
      endpoint.kill();
    }
  });

  test('drain by reload: no new sessions to south (-ERR [SYS/TEMP]), its live session finishes, north keeps working', async () => {
    const routing = { routes: [userRoute('alice', 'north'), domainRoute('example.net', 'south')] };
    let next: Config | undefined;
    const proxy = await start({ routing, loadConfig: () => next ?? assert.fail('no next config') });
    const live = await RawClient.plain(proxy.host, proxy.stlsPort);
    try {
      await live.readLine();
      await live.command('STLS');
      await live.upgrade(proxy.caFile);
      await live.command(`USER ${BOB[0]}`);
      assert.equal(await live.command(`PASS ${BOB[1]}`), OK);
      next = testConfig({ backends: backends(['south']), routing, limits: { maxNewConnectionsPerIp: 1_000 } });
      assert.equal((await proxy.proxy.reload()).ok, true);
      assert.equal(await login(proxy, '127.0.0.1', ...BOB), UNAVAILABLE);
      assert.equal(await login(proxy, '127.0.0.1', ...ALICE), OK);
      assert.match(await live.command('STAT'), /^\+OK 1 \d+$/, 'the live session on south goes on');
      assert.equal(await live.command('QUIT'), '+OK Logging out.');
      assert.equal(audits(proxy).find((e) => e['backendError'] === 'drained')?.['backend'], 'south');
    } finally {
      live.destroy();
    }
  });

  test("a stopped backend: its users get -ERR [SYS/TEMP], the other's users still log in", async () => {
    const proxy = await start({ routing: { routes: [userRoute('alice', 'north'), domainRoute('example.net', 'south')] } });
    await south.stop();
    assert.equal(await login(proxy, '127.0.0.1', ...BOB), UNAVAILABLE);
    assert.equal(await login(proxy, '127.0.0.1', ...ALICE), OK);
  });
});
