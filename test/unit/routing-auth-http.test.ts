/**
 * The auth_http route source against a real HTTP server (node:http): nginx's request headers, the
 * answers it understands, and the bounds on a service that is slow, chatty or broken. Every
 * failure is an `error` answer (the router then asks routing.default), never an exception.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { authHttpSource, escapeAuthValue } from '../../src/backend/routing/auth-http.js';
import type { RouteQuery } from '../../src/backend/routing/source.js';

type Handler = (headers: IncomingHttpHeaders, response: ServerResponse) => void;

describe('auth_http route source', () => {
  let handler: Handler = (_h, response) => response.end();
  const server = createServer((request, response) => handler(request.headers, response));
  let url = '';
  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/auth`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const query: RouteQuery = {
    key: 'ünïcode user',
    user: 'J\u00f6rg 100%@example.org',
    password: () => Buffer.from('p w\r'),
    clientIp: '2001:db8::7',
    method: 'user',
    attempt: 3,
  };
  const ask = (sendPassword = false, timeoutMs = 2_000) =>
    authHttpSource({ url, timeoutMs, sendPassword, unlistedBackendTemplate: undefined }).lookup(query);

  it('sends nginx headers, user and password escaped as nginx does; routes by Auth-Server/Auth-Port', async () => {
    let seen: IncomingHttpHeaders = {};
    handler = (headers, response) => {
      seen = headers;
      response.writeHead(200, { 'Auth-Status': 'OK', 'Auth-Server': '2001:db8::25', 'Auth-Port': '110' }).end('ignored body');
    };
    assert.deepEqual(await ask(true), { kind: 'address', address: { host: '2001:db8::25', port: 110 } });
    assert.equal(seen['auth-user'], 'J%F6rg%20100%25@example.org');
    assert.equal(seen['auth-pass'], 'p%20w%0D');
    assert.equal(seen['auth-login-attempt'], '3');
    assert.equal(seen['client-ip'], '2001:db8::7');
    await ask(false);
    assert.equal(seen['auth-pass'], undefined);
    assert.equal(escapeAuthValue(Buffer.from('plain')), 'plain');
  });

  it('a refusal carries its Auth-Wait, bounded to 30 s', async () => {
    handler = (_h, response) => response.writeHead(200, { 'Auth-Status': 'Invalid login or password', 'Auth-Wait': '3' }).end();
    assert.deepEqual(await ask(), { kind: 'refused', waitMs: 3_000 });
    handler = (_h, response) => response.writeHead(200, { 'Auth-Status': 'no', 'Auth-Wait': '86400' }).end();
    assert.deepEqual(await ask(), { kind: 'refused', waitMs: 30_000 });
  });

  it('a slow, chatty or broken service is an error answer within the bounds', async () => {
    handler = () => undefined; // never answers
    assert.deepEqual(await ask(false, 200), { kind: 'error', reason: 'no answer within 200 ms' });
    handler = (_h, response) => response.writeHead(200, { 'Auth-Status': 'OK', 'X-Padding': 'x'.repeat(16 * 1024) }).end();
    const big = await ask();
    assert.equal(big?.kind, 'error', '16 KiB of headers is over the 8 KiB bound');
    handler = (_h, response) => response.writeHead(500).end();
    assert.deepEqual(await ask(), { kind: 'error', reason: 'status 500' });
    handler = (_h, response) => response.writeHead(200).end();
    assert.deepEqual(await ask(), { kind: 'error', reason: 'no Auth-Status header' });
    handler = (_h, response) => response.writeHead(200, { 'Auth-Status': 'OK', 'Auth-Server': '10.0.0.1' }).end();
    assert.deepEqual(await ask(), { kind: 'error', reason: 'Auth-Status OK without Auth-Server and Auth-Port' });
    handler = (_h, response) => response.writeHead(200, { 'Auth-Status': 'OK', 'Auth-Server': '10.0.0.1', 'Auth-Port': '99999' }).end();
    assert.equal((await ask())?.kind, 'error');
  });
});
