import { TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import type { TlsMaterial } from './tls-context.js';
import { onceWithin } from './once-within.js';

/**
 * Turns an accepted plaintext socket into a server-side TLS socket after STLS and waits for the
 * handshake. The caller must already have stopped reading the plain socket and thrown away
 * everything it buffered (S-01..S-03): the TLS layer starts from the bytes still in the kernel.
 * tls.Server's handshakeTimeout does not apply to sockets made this way, hence our own deadline (S-06).
 */
export async function upgradeToTls(socket: Socket, material: TlsMaterial, timeoutMs: number): Promise<TLSSocket> {
  const secured = new TLSSocket(socket, {
    isServer: true,
    secureContext: material.secureContext,
    requestCert: false,
    rejectUnauthorized: false,
  });
  try {
    await onceWithin(secured, 'secure', timeoutMs, { what: 'TLS handshake', failOn: ['close'] });
    return secured;
  } catch (error) {
    secured.destroy();
    socket.destroy();
    throw error;
  }
}
