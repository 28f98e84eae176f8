/**
 * Named backends and routing in the real popwarden process (issue 13), configured by its YAML
 * file: two Dovecot instances with different users, a map file changed on disk, per-backend
 * health in /metrics, and a backend drained by editing the config and sending SIGHUP.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { spawnPopwarden, stopAll, type PopwardenProcess } from '../harness/popwarden-process.js';
import { RawClient } from '../harness/raw-client.js';
import { scratchDir } from '../harness/scratch.js';
import { sharedBySuite } from '../harness/suite.js';

const OK = '+OK Logged in';
const AUTH_FAILED = '-ERR [AUTH] Authentication failed';
const UNAVAILABLE = '-ERR [SYS/TEMP] Mail server unavailable, try again later';

describe('routing in the real process', { timeout: 240_000 }, () => {
  /** Two Dovecot instances with different users. */
  const suite = sharedBySuite(async (keep) => {
    const [north, south] = await Promise.all(
      (['alice', 'bob'] as const).map(async (user) => keep(await startDovecot({ profile: 'all', accounts: [user], authPenalty: false, authFailureDelay: '0' }))),
    );
    return { north: north!, south: south! };
  });
  let pw: PopwardenProcess | undefined;

  async function login(user: string, password: string): Promise<string> {
    const client = await RawClient.plain(pw!.host, pw!.stlsPort);
    try {
      await client.readLine();
      await client.command('STLS');
      await client.upgrade(pw!.caFile);
      await client.command(`USER ${user}`);
      return await client.command(`PASS ${password}`);
    } finally {
      client.destroy();
    }
  }

  test('map file routes, a change on disk applies, health per backend, drain by SIGHUP', async (t) => {
    const { north, south } = suite();
    // Stopped before the backends it routes to, its crash report checked.
    t.after(() => stopAll([pw]));
    const mapFile = join(scratchDir('popwarden-routes'), 'routes.map');
    writeFileSync(mapFile, '# who lives where\nalice north\n*@example.net south\n');
    const backend = (dovecot: Dovecot, extra: Record<string, unknown> = {}) => ({
      address: `${dovecot.host}:${dovecot.port}`,
      trust_loopback: true,
      probe_interval: '1s',
      ...extra,
    });
    const settings = (drainSouth: boolean) => ({
      backends: { north: backend(north), south: backend(south, { rewrite: 'strip_domain', drain: drainSouth }) },
      routing: { map_file: mapFile },
      limits: { max_new_connections_per_ip: 1_000, max_new_connections_per_ip_per_minute: 0 },
    });
    pw = await spawnPopwarden(settings(false));

    assert.equal(await login('alice', 's3cret!pw'), OK);
    assert.equal(await login('bob@example.net', 'bobpass'), OK);
    assert.equal(await login('carol@example.org', 'x'), AUTH_FAILED, 'no route, no default: a wrong password');
    // The log travels through a pipe: wait for the last audit line before reading them all.
    await pw.waitForLog((e) => e['event'] === 'login' && e['user'] === 'carol@example.org');
    const audit = pw.logs().filter((e) => e['event'] === 'login').map((e) => [e['user'], e['backend'] ?? null, e['backendUser'] ?? null, e['result']]);
    assert.deepEqual(audit, [
      ['alice', 'north', null, 'success'],
      ['bob@example.net', 'south', 'bob', 'success'],
      ['carol@example.org', null, null, 'failure'],
    ]);

    // Both backends probed, each under its configured name.
    await pw.waitForLog((e) => e['msg'] === 'backend probe: up' && e['backend'] === 'south');
    await pw.waitForLog((e) => e['msg'] === 'backend probe: up' && e['backend'] === 'north');
    assert.equal(await pw.metric('popwarden_backend_up', { backend: 'north' }), 1);
    assert.equal(await pw.metric('popwarden_backend_up', { backend: 'south' }), 1);

    // The map file changes on disk (replaced by rename): bob now goes north, where he has no account.
    const loads = pw.logs().length;
    writeFileSync(`${mapFile}.new`, 'alice north\n*@example.net north\n');
    renameSync(`${mapFile}.new`, mapFile);
    await pw.waitForLog((e) => e['msg'] === 'routing.map_file loaded', { since: loads });
    assert.equal(await login('bob@example.net', 'bobpass'), AUTH_FAILED);
    writeFileSync(mapFile, 'alice north\n*@example.net south\n');

    // Drain south by editing the config and SIGHUP: bob gets [SYS/TEMP], alice still logs in.
    pw.rewriteConfig(settings(true));
    const reloads = pw.logs().length;
    pw.hangUp();
    await pw.waitForLog((e) => String(e['msg']).startsWith('reloaded'), { since: reloads });
    assert.equal(await login('bob@example.net', 'bobpass'), UNAVAILABLE);
    assert.equal(await login('alice', 's3cret!pw'), OK);
    assert.equal(await pw.metric('popwarden_route_lookups_total', { source: 'map_file', result: 'hit' }) >= 5, true);
  });
});
