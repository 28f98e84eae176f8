import { TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import type { TlsMaterial } from './tls-material.js';
import { onceWithin } from './once-within.js';

/** limits.max_handshakes_per_ip reached: the upgrade was refused before any TLS work. */
export class HandshakeRefusedError extends Error {
  constructor() {
    super('too many TLS handshakes in progress from this address (limits.max_handshakes_per_ip)');
    this.name = 'HandshakeRefusedError';
  }
}

/**
 * ALPN: a client that asks only for another protocol (a browser's "http/1.1") is refused with
 * alert 120, so a TLS connection meant for a web server cannot be redirected here and have its
 * bytes read as POP3 (ALPACA, CVE-2021-3618, X-05). Clients that send no ALPN, as mail clients
 * do, are unaffected.
 */
export const POP3_ALPN = ['pop3'];

/**
 * POP3_ALPN as Node's ALPNCallback: 'pop3' when the client offers it, otherwise no protocol,
 * which Node answers with alert 120 (no_application_protocol), as it does for ALPNProtocols
 * without a match. A callback rather than the list: with `ALPNProtocols`, Node copies the list
 * into a Buffer of its own for every TLS socket, a slice of its shared 8 KiB pool, so each idle
 * session kept the pool slab its copy landed in alive (issue 10.4: about 0.4 KiB a session).
 */
export const selectPop3Alpn = ({ protocols }: { readonly protocols: readonly string[] }): string | undefined =>
  protocols.includes(POP3_ALPN[0]!) ? POP3_ALPN[0] : undefined;

/**
 * Turns an accepted plaintext socket into a server-side TLS socket after STLS and waits for the
 * handshake. The caller must already have stopped reading the plain socket and thrown away
 * everything it buffered (S-01..S-03): the TLS layer starts from the bytes still in the kernel.
 * tls.Server's handshakeTimeout does not apply to sockets made this way, hence our own deadline (S-06).
 * `material` is read now, so a TlsProvider hands every upgrade the set that is current at STLS.
 * `clientAddress` is the one the handshake bound counts (the PROXY header's client, if any).
 */
export async function upgradeToTls(socket: Socket, material: TlsMaterial, timeoutMs: number, clientAddress: string): Promise<TLSSocket> {
  // Evictable like a handshake on the implicit-TLS port: a stalled one after STLS would otherwise
  // hold limits.max_handshakes, which both ports share, for a whole timeout (issue 14.3's slowloris
  // through the plain port). Closing the socket fails the wait below, and the session closes.
  const release = material.beginHandshake === undefined ? () => undefined : material.beginHandshake(clientAddress, () => socket.destroy());
  if (release === undefined) {
    // Closed before any TLS work: the client gets no ServerHello, only the FIN.
    socket.destroy();
    throw new HandshakeRefusedError();
  }
  socket.once('close', release);
  const secured = new TLSSocket(socket, {
    isServer: true,
    secureContext: material.secureContext,
    requestCert: false,
    rejectUnauthorized: false,
    ALPNCallback: selectPop3Alpn,
    // SNI after STLS too: the same certificate choice as the implicit-TLS port (T-08 parity).
    SNICallback: (servername, callback) => callback(null, material.contextFor?.(servername) ?? material.secureContext),
  });
  try {
    await onceWithin(secured, 'secure', timeoutMs, { what: 'TLS handshake', failOn: ['close', 'end'] });
    release();
    // Not kept for the session's life: the handshake's place (its entry and eviction) is done with.
    socket.off('close', release);
    return secured;
  } catch (error) {
    secured.destroy();
    socket.destroy();
    throw error;
  }
}
