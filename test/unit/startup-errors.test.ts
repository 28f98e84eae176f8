import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../src/config/load.js';
import { startupErrorLine } from '../../src/config/startup-errors.js';
import { TlsMaterialError } from '../../src/tls/material-error.js';

/** The shape Node gives listen() failures. */
function listenError(code: string, address: string, port: number): Error {
  return Object.assign(new Error(`listen ${code}: ${address}:${port}`), { code, errno: -1, syscall: 'listen', address, port });
}

describe('startupErrorLine', () => {
  it('passes config and TLS errors through with a prefix', () => {
    assert.equal(startupErrorLine(new ConfigError('config: backend is required')), 'popwarden: config: backend is required');
    assert.equal(startupErrorLine(new TlsMaterialError('key x does not belong to cert y')), 'popwarden: tls: key x does not belong to cert y');
  });

  it('explains a privileged port and names the fix', () => {
    assert.equal(
      startupErrorLine(listenError('EACCES', '0.0.0.0', 995)),
      'popwarden: cannot listen on 0.0.0.0:995: permission denied; a port below 1024 needs CAP_NET_BIND_SERVICE (see README, systemd unit) or a port above 1023',
    );
    assert.equal(startupErrorLine(listenError('EACCES', '0.0.0.0', 1995)), 'popwarden: cannot listen on 0.0.0.0:1995: permission denied');
  });

  it('explains an address in use or missing, with IPv6 in brackets', () => {
    assert.match(startupErrorLine(listenError('EADDRINUSE', '::1', 995)), /^popwarden: cannot listen on \[::1\]:995: address already in use; /);
    assert.match(startupErrorLine(listenError('EADDRNOTAVAIL', '192.0.2.1', 995)), /no such address on this host/);
  });

  it('explains file errors with the path', () => {
    const error = Object.assign(new Error("EACCES: permission denied, mkdir '/var/lib/popwarden'"), { code: 'EACCES', syscall: 'mkdir', path: '/var/lib/popwarden' });
    assert.equal(startupErrorLine(error), 'popwarden: cannot mkdir /var/lib/popwarden: permission denied; check state_dir (or STATE_DIRECTORY) and file permissions');
  });

  it('always returns a single line', () => {
    assert.equal(startupErrorLine(new Error('first\nsecond\r\nthird')), 'popwarden: unexpected startup error: first second third');
    assert.equal(startupErrorLine('a string'), 'popwarden: unexpected startup error: a string');
  });
});
