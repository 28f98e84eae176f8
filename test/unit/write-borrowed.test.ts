import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer as createTcpServer, connect as tcpConnect, type AddressInfo, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { once } from 'node:events';
import { writeBorrowed } from '../../src/backend/link.js';
import { createTestCa } from '../harness/test-ca.js';

/**
 * writeBorrowed gets views of the one read buffer every plaintext backend socket shares: the
 * next read overwrites it. Whatever the client socket keeps past the call must be a copy, or a
 * relayed message silently takes the next read's bytes.
 */
const ca = createTestCa();
const servers: Server[] = [];
after(() => servers.forEach((server) => server.close()));

/** A connected pair: `writer` is the server's side of `kind`, `received` what its peer read, whole. */
async function pair(kind: 'tls' | 'tcp'): Promise<{ writer: Socket | TLSSocket; received: Promise<Buffer> }> {
  const accepted = new Promise<Socket | TLSSocket>((resolve) => {
    const server =
      kind === 'tls'
        ? createTlsServer({ cert: readFileSync(ca.certFile), key: readFileSync(ca.keyFile) }, resolve)
        : createTcpServer(resolve);
    servers.push(server);
    server.listen(0, '127.0.0.1');
  });
  await once(servers.at(-1)!, 'listening');
  const port = (servers.at(-1)!.address() as AddressInfo).port;
  const peer = kind === 'tls' ? tlsConnect({ host: '127.0.0.1', port, ca: readFileSync(ca.caFile), servername: 'localhost' }) : tcpConnect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  peer.on('data', (chunk: Buffer) => chunks.push(chunk));
  const received = once(peer, 'end').then(() => Buffer.concat(chunks));
  return { writer: await accepted, received };
}

/** Writes `count` chunks through one reused buffer, as the backend reads arrive. */
function writeThroughOneBuffer(writer: Socket | TLSSocket, count: number, size: number): Buffer {
  const reused = Buffer.alloc(size);
  const expected: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    reused.fill(0x41 + (i % 26));
    expected.push(Buffer.from(reused));
    writeBorrowed(writer, reused);
  }
  reused.fill(0x2a); // the next read
  return Buffer.concat(expected);
}

describe('writeBorrowed', () => {
  test('a busy TLS socket keeps copies: every chunk arrives as it was when written', async () => {
    const { writer, received } = await pair('tls');
    const expected = writeThroughOneBuffer(writer, 40, 64 * 1024); // the first write is in flight; the rest queue
    writer.end();
    assert.ok((await received).equals(expected));
  });

  test('a corked TLS socket keeps copies', async () => {
    const { writer, received } = await pair('tls');
    writer.cork();
    const expected = writeThroughOneBuffer(writer, 3, 100);
    writer.uncork();
    writer.end();
    assert.ok((await received).equals(expected));
  });

  test('a plaintext socket keeps copies (the kernel may take the bytes later)', async () => {
    const { writer, received } = await pair('tcp');
    const expected = writeThroughOneBuffer(writer, 1, 8 * 1024 * 1024); // more than a socket buffer takes at once
    writer.end();
    assert.ok((await received).equals(expected));
  });
});
