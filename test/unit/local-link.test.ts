/**
 * The trust rule for local links (issue 12): when a UNIX socket or a program may receive a
 * cleartext password. The attacker is a local user who wants to stand in for the server: they
 * need to write a directory on the way to the socket, or the program.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isLocalBackend, localLinkTrust, replaceableBecause } from '../../src/backend/local-link.js';
import { testConfig } from '../harness/popwarden.js';
import type { BackendAddress } from '../../src/config/types.js';

const root = mkdtempSync(join(tmpdir(), 'popwarden-local-link-'));
after(() => rmSync(root, { recursive: true, force: true }));

function directory(name: string, mode: number): string {
  const path = join(root, name);
  mkdirSync(path, { recursive: true });
  chmodSync(path, mode);
  return path;
}

describe('replaceableBecause: sockets', () => {
  test('a socket in a directory only we may write (below sticky /tmp): nobody else can replace it', async () => {
    assert.equal(await replaceableBecause(join(directory('private', 0o700), 'pop3.sock'), 'socket'), undefined);
  });

  test('a directory others may write, even with the sticky bit, as the socket\u2019s own directory', async () => {
    const open = directory('open', 0o777);
    assert.match((await replaceableBecause(join(open, 'pop3.sock'), 'socket')) ?? '', new RegExp(`${open} is writable by group or others \\(mode 777\\)`));
    const sticky = directory('sticky', 0o1777);
    assert.match((await replaceableBecause(join(sticky, 'pop3.sock'), 'socket')) ?? '', /is writable by group or others \(mode 1777\)/);
  });

  test('a sticky directory above a private one of ours is fine', async () => {
    const inner = join(directory('sticky-above', 0o1777), 'inner');
    mkdirSync(inner, { mode: 0o700 });
    assert.equal(await replaceableBecause(join(inner, 'pop3.sock'), 'socket'), undefined);
  });

  test('a directory another user owns', async () => {
    const theirs = directory('theirs', 0o755);
    chownSync(theirs, 12345, 12345);
    assert.match((await replaceableBecause(join(theirs, 'pop3.sock'), 'socket')) ?? '', /belongs to uid 12345/);
  });

  test('a symbolic link into a directory others may write: the resolved path is checked too', async () => {
    const open = directory('open-target', 0o777);
    writeFileSync(join(open, 'real.sock'), '');
    const link = join(directory('private-link', 0o700), 'pop3.sock');
    symlinkSync(join(open, 'real.sock'), link);
    assert.match((await replaceableBecause(link, 'socket')) ?? '', /open-target is writable by group or others/);
  });
});

describe('replaceableBecause: programs', () => {
  const dir = directory('programs', 0o755);
  const program = (name: string, mode: number): string => {
    const path = join(dir, name);
    writeFileSync(path, '#!/bin/sh\n');
    chmodSync(path, mode);
    return path;
  };

  test('a program of ours that only we may write is safe', async () => {
    assert.equal(await replaceableBecause(program('ok', 0o755), 'program'), undefined);
  });

  test('a program that group or others may write, or that another user owns, is not', async () => {
    assert.match((await replaceableBecause(program('group-writable', 0o775), 'program')) ?? '', /group-writable is writable by group or others/);
    const theirs = program('theirs', 0o755);
    chownSync(theirs, 12345, 12345);
    assert.match((await replaceableBecause(theirs, 'program')) ?? '', /theirs belongs to uid 12345/);
  });
});

describe('localLinkTrust and isLocalBackend', () => {
  const backend = (address: BackendAddress, trustLoopback: boolean | undefined) => testConfig({ backend: { address, trustLoopback } }).backends[0]!;
  const exec: BackendAddress = { kind: 'exec', command: '/usr/sbin/popa3d', args: [], environment: {}, cwd: undefined };

  test('a program popwarden starts is trusted unless backend_trust_loopback is false', async () => {
    assert.deepEqual(await localLinkTrust(backend(exec, undefined), undefined), { trusted: true });
    assert.deepEqual(await localLinkTrust(backend(exec, false), undefined), { trusted: false });
  });

  test('a UNIX socket by the directory rule, or as backend_trust_loopback says', async () => {
    const open = { kind: 'unix', path: join(directory('open-trust', 0o777), 's.sock') } as const;
    assert.equal((await localLinkTrust(backend(open, undefined), undefined)).trusted, false);
    assert.equal((await localLinkTrust(backend(open, true), undefined)).trusted, true);
    const closed = { kind: 'unix', path: join(directory('closed-trust', 0o700), 's.sock') } as const;
    assert.equal((await localLinkTrust(backend(closed, undefined), undefined)).trusted, true);
    assert.equal((await localLinkTrust(backend(closed, false), undefined)).trusted, false);
  });

  test('TCP: the privileged-port rule as before', async () => {
    assert.equal((await localLinkTrust(backend({ kind: 'tcp', host: '127.0.0.1', port: 110 }, undefined), '127.0.0.1')).trusted, true);
    assert.equal((await localLinkTrust(backend({ kind: 'tcp', host: '127.0.0.1', port: 1110 }, undefined), '127.0.0.1')).trusted, false);
  });

  test('local backends: loopback, UNIX sockets, programs', () => {
    assert.equal(isLocalBackend(exec), true);
    assert.equal(isLocalBackend({ kind: 'unix', path: '/run/x.sock' }), true);
    assert.equal(isLocalBackend({ kind: 'tcp', host: 'localhost', port: 110 }), true);
    assert.equal(isLocalBackend({ kind: 'tcp', host: 'mail.example', port: 110 }), false);
  });
});
