import { connect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import type { BackendConfig } from '../config/types.js';
import { backendReadOptions } from './link.js';
import { awaitBackendSocket } from './socket-wait.js';
import { encodeLocalProxyHeader, encodeProxyHeader } from '../net/proxy-protocol.js';
import type { ClientOrigin } from '../net/proxy-intake.js';

/**
 * Opens a connection to the backend: TCP, then with backend_proxy_protocol the PROXY header for
 * `client` (LOCAL without one: popwarden's own probe), and for `backend_tls: implicit` the TLS
 * handshake, verified as `tlsOptions` say, all within `timeoutMs`. Fails with E_BACKEND_CONNECT,
 * E_BACKEND_TIMEOUT or E_BACKEND_TLS.
 */
export async function dialBackend(backend: BackendConfig, timeoutMs: number, tlsOptions: ConnectionOptions, client?: ClientOrigin): Promise<Socket> {
  const deadline = Date.now() + timeoutMs;
  const socket = connect({
    host: backend.host,
    port: backend.port,
    // Reads into one shared buffer instead of a fresh 64 KiB one each (see backendReadOptions).
    onread: backendReadOptions,
    ...(backend.sourceAddress === undefined ? {} : { localAddress: backend.sourceAddress }),
  });
  socket.setNoDelay(true);
  await awaitBackendSocket(socket, 'connect', timeoutMs, { what: 'connection' }, 'connect', 'E_BACKEND_CONNECT');
  if (backend.proxyProtocol !== 'off') socket.write(proxyHeader(backend.proxyProtocol, client));
  if (backend.tls !== 'implicit') {
    // Reads land in a shared buffer and reach only the listeners present: none is lost while the
    // socket waits, paused, for the BackendLink, which resumes it when it first waits for a reply.
    socket.pause();
    return socket;
  }

  const secured = tlsConnect({ ...tlsOptions, socket });
  const remaining = Math.max(1, deadline - Date.now());
  await awaitBackendSocket(secured, 'secureConnect', remaining, { what: 'TLS handshake', failOn: ['close'] }, 'tls-handshake', 'E_BACKEND_TLS');
  return secured;
}

/** The header before anything else on the link: the client's addresses, or LOCAL when popwarden speaks for itself. */
function proxyHeader(version: 'v1' | 'v2', client: ClientOrigin | undefined): Buffer {
  if (client === undefined || isIP(client.address) === 0 || isIP(client.localAddress) === 0) return encodeLocalProxyHeader(version);
  return encodeProxyHeader(version, { address: client.address, port: client.port }, { address: client.localAddress, port: client.localPort });
}
