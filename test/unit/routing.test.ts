/**
 * Choosing a login's backend (issue 13): the config's routes in order, the map file, username
 * rewriting, what a route may name, and what happens when a source fails. The sources that talk
 * to real servers (Redis, auth_http) are tested against real ones in test/e2e/routing*.test.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Router } from '../../src/backend/routing/router.js';
import { routeKey, rewriteUser } from '../../src/backend/routing/keys.js';
import { MapFile, parseMapFile } from '../../src/backend/routing/map-file.js';
import { staticSource } from '../../src/backend/routing/static-source.js';
import type { RouteQuery, RouteSource, SourceAnswer } from '../../src/backend/routing/source.js';
import { isBoundedPattern } from '../../src/config/route-patterns.js';
import type { Config, StaticRoute } from '../../src/config/types.js';
import { createLogger } from '../../src/observability/log.js';
import type { RouteLookupResult, RouteSourceLabel } from '../../src/observability/metrics.js';
import { LogCapture } from '../harness/log-capture.js';
import { scratchDir } from '../harness/scratch.js';
import { testConfig } from '../harness/popwarden.js';

const config = (routing: Partial<Config['routing']> = {}, drain: readonly string[] = []): Config =>
  testConfig({
    backends: [
      { name: 'mail1', host: '192.0.2.1', port: 110, drain: drain.includes('mail1') },
      { name: 'mail2', host: '192.0.2.2', port: 110, rewrite: 'strip_domain', drain: drain.includes('mail2') },
    ],
    routing,
  });

const query = (user: string): RouteQuery => ({
  key: routeKey(user, true),
  user,
  password: () => Buffer.from('secret'),
  clientIp: '198.51.100.7',
  method: 'user',
  attempt: 1,
});

const route = (match: StaticRoute['match'], backend: string, rewrite?: string): StaticRoute => ({ match, backend, rewrite });

function router(cfg: Config, sources: RouteSource[]) {
  const counted: string[] = [];
  const logs = new LogCapture();
  const metrics = { routeLookup: (source: RouteSourceLabel, result: RouteLookupResult) => void counted.push(`${source}:${result}`) };
  return { router: new Router(cfg, sources, createLogger('info', logs.stream), metrics), counted, logs };
}

/** The backend a decision names and the user it gets there, or the decision's kind. */
async function chosen(r: Router, user: string): Promise<string> {
  const decision = await r.choose(query(user));
  return decision.kind === 'backend' ? `${decision.target.config.name} as ${decision.backendUser} (${decision.source})` : decision.kind;
}

describe('static routes', () => {
  const routes = [
    route({ kind: 'user', user: 'Carol@Example.org' }, 'mail2', '%n-pop'),
    route({ kind: 'domain', domain: 'example.org' }, 'mail1'),
    route({ kind: 'regex', source: '^[a-m][^@]*@example\\.net$' }, 'mail2'),
    route({ kind: 'domain', domain: 'example.net' }, 'mail1'),
  ];

  it('are tried in order, the first match wins; names compare trimmed and lower-cased', async () => {
    const cfg = config({ routes, defaultBackend: undefined });
    const { router: r } = router(cfg, [staticSource(cfg.routing.routes, true)]);
    assert.equal(await chosen(r, ' CAROL@example.org'), 'mail2 as CAROL-pop (static)');
    assert.equal(await chosen(r, 'dave@example.org'), 'mail1 as dave@example.org (static)');
    assert.equal(await chosen(r, 'alice@example.net'), 'mail2 as alice (static)', 'mail2 strips the domain');
    assert.equal(await chosen(r, 'zed@example.net'), 'mail1 as zed@example.net (static)');
    assert.equal(await chosen(r, 'nobody@example.com'), 'unknown');
  });

  it('a user no route takes goes to routing.default', async () => {
    const cfg = config({ routes, defaultBackend: 'mail2' });
    const { router: r, counted } = router(cfg, [staticSource(cfg.routing.routes, true)]);
    assert.equal(await chosen(r, 'nobody@example.com'), 'mail2 as nobody (default)');
    assert.deepEqual(counted, ['static:miss', 'default:hit']);
  });

  it('a drained backend takes no new sessions: its users get the drained decision', async () => {
    const cfg = config({ routes, defaultBackend: 'mail2' }, ['mail2']);
    const { router: r } = router(cfg, [staticSource(cfg.routing.routes, true)]);
    assert.equal(await chosen(r, 'alice@example.net'), 'drained');
    assert.equal(await chosen(r, 'zed@example.net'), 'mail1 as zed@example.net (static)');
  });
});

describe('what a route may name', () => {
  const answering = (answer: SourceAnswer): RouteSource => ({ name: 'auth_http', lookup: () => answer });

  it('a backend name nobody configured is ignored (logged, counted) and the default decides', async () => {
    const { router: r, counted, logs } = router(config({ defaultBackend: 'mail1' }), [answering({ kind: 'backend', backend: 'evil' })]);
    assert.equal(await chosen(r, 'alice'), 'mail1 as alice (default)');
    assert.deepEqual(counted, ['auth_http:hit', 'auth_http:error', 'default:hit']);
    assert.ok(logs.entries().some((e) => e['msg'] === 'route names no configured backend: ignored (routes may only name backends in the config)' && e['backend'] === 'evil'));
  });

  it('an address matches a configured backend; another address is refused unless a template is opted into', async () => {
    const known = answering({ kind: 'address', address: { host: '192.0.2.2', port: 110 } });
    assert.equal(await chosen(router(config(), [known]).router, 'bob@x'), 'mail2 as bob (auth_http)');
    const unlisted = answering({ kind: 'address', address: { host: '203.0.113.9', port: 110 } });
    assert.equal(await chosen(router(config({ defaultBackend: undefined }), [unlisted]).router, 'bob@x'), 'unknown');
    const template = { url: 'http://127.0.0.1:1/', timeoutMs: 1000, sendPassword: false, unlistedBackendTemplate: 'mail1' };
    const decision = await router(config({ authHttp: template }), [unlisted]).router.choose(query('bob@x'));
    assert.equal(decision.kind, 'backend');
    if (decision.kind !== 'backend') return;
    // The template's settings and name (a bounded label), at the address given.
    assert.deepEqual([decision.target.config.name, decision.target.config.address], ['mail1', { kind: 'tcp', host: '203.0.113.9', port: 110 }]);
    // Its certificate is checked against that address, not the template's (nor "localhost").
    assert.deepEqual([decision.target.tlsOptions.host, decision.target.tlsOptions.servername], ['203.0.113.9', undefined]);
  });

  it('a refusal is passed on; a failing source is logged once per outage, counted each time, and skipped', async () => {
    assert.deepEqual(await router(config(), [answering({ kind: 'refused', waitMs: 3000 })]).router.choose(query('x')), { kind: 'refused', waitMs: 3000 });
    let up = false;
    const flaky: RouteSource = { name: 'redis', lookup: () => (up ? { kind: 'backend', backend: 'mail2' } : { kind: 'error', reason: 'connection refused' }) };
    const { router: r, counted, logs } = router(config({ defaultBackend: 'mail1' }), [flaky]);
    assert.equal(await chosen(r, 'a'), 'mail1 as a (default)');
    assert.equal(await chosen(r, 'b'), 'mail1 as b (default)');
    up = true;
    assert.equal(await chosen(r, 'c'), 'mail2 as c (redis)');
    assert.deepEqual(counted, ['redis:error', 'default:hit', 'redis:error', 'default:hit', 'redis:hit']);
    const messages = logs.entries().map((e) => e['msg']);
    assert.equal(messages.filter((m) => typeof m === 'string' && m.startsWith('route lookup failed')).length, 1);
    assert.ok(messages.includes('route lookups answer again'));
  });
});

describe('username rewriting', () => {
  it('strip_domain and templates (%u %n %d %%) work on the name as typed, trimmed', () => {
    assert.equal(rewriteUser(undefined, 'Alice@Example.org'), 'Alice@Example.org');
    assert.equal(rewriteUser('strip_domain', ' Alice@Example.org '), 'Alice');
    assert.equal(rewriteUser('strip_domain', 'a@b@c'), 'a@b');
    assert.equal(rewriteUser('%d+%n', 'alice@example.org'), 'example.org+alice');
    assert.equal(rewriteUser('%u%%', 'bob'), 'bob%');
    assert.equal(rewriteUser('%n@legacy.example', 'bob'), 'bob@legacy.example');
  });

  it('a rewritten name longer than a login line may carry fails the login instead of reaching the backend', async () => {
    const cfg = config({ routes: [route({ kind: 'domain', domain: 'x' }, 'mail1', '%u%u')] });
    const { router: r } = router(cfg, [staticSource(cfg.routing.routes, true)]);
    assert.equal(await chosen(r, `${'a'.repeat(100)}@x`), 'mail1 as ' + `${'a'.repeat(100)}@x`.repeat(2) + ' (static)');
    assert.equal(await chosen(r, `${'a'.repeat(130)}@x`), 'unknown');
  });
});

describe('route regular expressions', () => {
  it('the shapes that backtrack without bound are refused, ordinary ones pass', () => {
    for (const bad of ['(a+)+$', '(a*)*b', '(a|aa)+$', '(\\w+\\s?)*$', '(.*){2,}x', '(a)\\1', '(?<x>a)\\k<x>', '(unclosed']) {
      assert.equal(isBoundedPattern(bad), false, bad);
    }
    for (const good of ['^[a-m].*@example\\.net$', '^(sales|support)@example\\.org$', '^u[0-9]{3,8}$', '^[^@]+@(?:mx1|mx2)\\.example$', '[(+]+']) {
      assert.equal(isBoundedPattern(good), true, good);
    }
  });
});

describe('map file', () => {
  it('parses user and *@domain lines, comments and blank lines; a bad line refuses the whole file', () => {
    const parsed = parseMapFile('# users\nalice@example.org mail1\r\n\n*@example.net\tmail2\n');
    assert.ok(parsed.ok);
    assert.deepEqual(parsed.routes.map((r) => [r.match, r.backend]), [
      [{ kind: 'user', user: 'alice@example.org' }, 'mail1'],
      [{ kind: 'domain', domain: 'example.net' }, 'mail2'],
    ]);
    assert.deepEqual(parseMapFile('alice mail1\nbob\n'), { ok: false, problem: 'line 2: expected "user-or-*@domain backend-name"' });
    assert.deepEqual(parseMapFile('alice mail/1\n'), { ok: false, problem: 'line 1: "mail/1" is not a backend name' });
  });

  it('an exact name wins over its domain; a bad file keeps the last good map, logged once', async () => {
    const dir = scratchDir('popwarden-map');
    mkdirSync(dir, { recursive: true });
    const path = join(dir, 'routes.map');
    writeFileSync(path, '*@example.org mail1\nbob@example.org mail2\n');
    const logs = new LogCapture();
    const map = new MapFile(path, true, createLogger('info', logs.stream));
    try {
      assert.deepEqual(map.lookup(query('Bob@example.org')), { kind: 'backend', backend: 'mail2' });
      assert.deepEqual(map.lookup(query('eve@example.org')), { kind: 'backend', backend: 'mail1' });
      assert.equal(map.lookup(query('eve@example.com')), undefined);
      writeFileSync(path, 'bob@example.org\n');
      map.reload();
      map.reload();
      assert.deepEqual(map.lookup(query('bob@example.org')), { kind: 'backend', backend: 'mail2' }, 'the last good map');
      assert.equal(logs.entries().filter((e) => e['msg'] === 'routing.map_file refused: the last good map stays in use').length, 1);
      // A change on disk is picked up without a reload (the file is replaced by rename, as tools do).
      writeFileSync(`${path}.new`, 'bob@example.org mail1\n');
      renameSync(`${path}.new`, path);
      await logs.waitFor((e) => e['msg'] === 'routing.map_file loaded' && e['routes'] === 1);
      assert.deepEqual(map.lookup(query('bob@example.org')), { kind: 'backend', backend: 'mail1' });
    } finally {
      map.close();
    }
  });
});
