import { TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import type { TlsMaterial } from './tls-context.js';

/**
 * Turns an accepted plaintext socket into a server-side TLS socket after STLS and waits for the
 * handshake. The caller must already have stopped reading the plain socket and thrown away
 * everything it buffered (S-01..S-03): the TLS layer starts from the bytes still in the kernel.
 * tls.Server's handshakeTimeout does not apply to sockets made this way, hence our own timer (S-06).
 */
export function upgradeToTls(socket: Socket, material: TlsMaterial, timeoutMs: number): Promise<TLSSocket> {
  return new Promise<TLSSocket>((resolve, reject) => {
    const secured = new TLSSocket(socket, {
      isServer: true,
      secureContext: material.secureContext,
      requestCert: false,
      rejectUnauthorized: false,
    });
    const timer = setTimeout(() => fail(new Error(`no TLS handshake within ${timeoutMs} ms`)), timeoutMs);
    const onSecure = (): void => {
      cleanup();
      resolve(secured);
    };
    const fail = (error: Error): void => {
      cleanup();
      secured.destroy();
      socket.destroy();
      reject(error);
    };
    const onClose = (): void => fail(new Error('connection closed during the TLS handshake'));
    const cleanup = (): void => {
      clearTimeout(timer);
      secured.off('secure', onSecure);
      secured.off('error', fail);
      secured.off('close', onClose);
    };
    secured.once('secure', onSecure);
    secured.once('error', fail);
    secured.once('close', onClose);
  });
}
