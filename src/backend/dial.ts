import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import type { BackendConfig } from '../config/types.js';
import { backendReadOptions } from './link.js';
import { awaitBackendSocket } from './socket-wait.js';

/**
 * Opens a connection to the backend: TCP, and for `backend_tls: implicit` the TLS handshake too,
 * verified as `tlsOptions` say, all within `timeoutMs`. Fails with E_BACKEND_CONNECT,
 * E_BACKEND_TIMEOUT or E_BACKEND_TLS.
 */
export async function dialBackend(backend: BackendConfig, timeoutMs: number, tlsOptions: ConnectionOptions): Promise<Socket> {
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
