/**
 * A recording TCP tap: sits between popwarden and its backend and keeps every byte of both
 * directions, so a test can prove what did (or did not) cross the backend link.
 */
import net from 'node:net';
import { listenOnFreePort } from './ports.js';

/** A running tap. */
export interface Tap {
  readonly host: string;
  readonly port: number;
  /** Everything any client sent towards the target, in arrival order per connection. */
  bytesClientToServer(): Buffer;
  /** Everything the target sent back. */
  bytesServerToClient(): Buffer;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Closes the listener and destroys every open connection. */
  stop(): Promise<void>;
}

/** Listens on 127.0.0.1 at a free port (kernel-chosen) and forwards each connection to targetHost:targetPort, recording both ways. */
export async function startTap(targetHost: string, targetPort: number): Promise<Tap> {
  const host = '127.0.0.1';
  const c2s: Buffer[] = [];
  const s2c: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((client) => {
    connections++;
    sockets.add(client);
    client.pause();
    const upstream = net.connect({ host: targetHost, port: targetPort }, () => client.resume());
    sockets.add(upstream);
    client.on('data', (d: Buffer) => {
      c2s.push(Buffer.from(d));
      if (!upstream.write(d)) client.pause();
    });
    upstream.on('drain', () => client.resume());
    upstream.on('data', (d: Buffer) => {
      s2c.push(Buffer.from(d));
      if (!client.write(d)) upstream.pause();
    });
    client.on('drain', () => upstream.resume());
    // Pass half-closes through; an error or reset on one side resets the other.
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => {
      sockets.delete(client);
      upstream.destroy();
    });
    upstream.on('close', () => {
      sockets.delete(upstream);
      client.destroy();
    });
  });
  const port = await listenOnFreePort(server, host);
  return {
    host,
    port,
    bytesClientToServer: () => Buffer.concat(c2s),
    bytesServerToClient: () => Buffer.concat(s2c),
    get connections() {
      return connections;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * Which forms of `pass` appear in `bytes` (what crossed a tapped link): in clear, base64, hex
 * (either case), or inside an AUTH PLAIN payload for `user`. Empty when none does.
 */
export function passwordFormsIn(bytes: Buffer, user: string, pass: string): string[] {
  const hex = Buffer.from(pass).toString('hex');
  const forms = [pass, Buffer.from(pass).toString('base64'), hex, hex.toUpperCase(), Buffer.from(`\0${user}\0${pass}`).toString('base64')];
  const text = bytes.toString('latin1');
  return forms.filter((form) => text.includes(form));
}

/**
 * The command lines that crossed the tap towards the server from offset `from` of
 * bytesClientToServer() on, one per line, with APOP digests and PASS arguments cut: what a test
 * compares to say which commands (and so how many failed logins) the backend saw.
 */
export function commandsSent(tap: Tap, from: number): string[] {
  return tap
    .bytesClientToServer()
    .subarray(from)
    .toString('latin1')
    .split('\r\n')
    .filter((l) => l !== '')
    .map((l) => l.replace(/^(APOP \S+) \S+$/, '$1 <digest>').replace(/^PASS .*/, 'PASS <password>'));
}
