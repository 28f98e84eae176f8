import { connect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import type { BackendConfig } from '../config/types.js';
import type { Logger } from '../observability/log.js';
import { backendReadOptions } from './link.js';
import { awaitBackendSocket } from './socket-wait.js';
import { encodeLocalProxyHeader, encodeProxyHeader } from '../net/proxy-protocol.js';
import type { ClientOrigin } from '../net/proxy-intake.js';
import type { BackendProcess, BackendPrograms } from './programs.js';

/** Where an `exec:` backend's program is started, and the cap on them. */
export interface ProgramRunner {
  readonly programs: BackendPrograms;
  /** limits.max_backend_processes */
  readonly limit: number;
  /** The session's logger: the program's exit line goes there. */
  readonly log: Logger;
}

/** A fresh backend connection, and the program behind it for an `exec:` backend. */
export interface BackendConnection {
  readonly socket: Socket;
  readonly process: BackendProcess | undefined;
}

/**
 * Opens a connection to the backend: TCP or a UNIX socket, then with backend_proxy_protocol the
 * PROXY header for `client` (LOCAL without one: popwarden's own probe); or starts an `exec:`
 * backend's program with the socket as its stdin and stdout (the client's address goes into its
 * environment instead). For `backend_tls: implicit` the TLS handshake too, verified as
 * `tlsOptions` say, all within `timeoutMs`. Fails with E_BACKEND_CONNECT, E_BACKEND_TIMEOUT,
 * E_BACKEND_TLS, or for a program E_BACKEND_EXEC and E_BACKEND_BUSY.
 */
export async function dialBackend(
  backend: BackendConfig,
  timeoutMs: number,
  tlsOptions: ConnectionOptions,
  client: ClientOrigin | undefined,
  runner: ProgramRunner,
): Promise<BackendConnection> {
  const deadline = Date.now() + timeoutMs;
  const { address } = backend;
  let socket: Socket;
  let process: BackendProcess | undefined;
  if (address.kind === 'exec') {
    ({ socket, process } = await runner.programs.start(address, { limit: runner.limit, client, log: runner.log, timeoutMs }));
  } else {
    socket = connect({
      ...(address.kind === 'unix' ? { path: address.path } : { host: address.host, port: address.port }),
      // Reads into one shared buffer instead of a fresh 64 KiB one each (see backendReadOptions).
      onread: backendReadOptions,
      ...(backend.sourceAddress === undefined || address.kind !== 'tcp' ? {} : { localAddress: backend.sourceAddress }),
    });
    if (address.kind === 'tcp') socket.setNoDelay(true);
    await awaitBackendSocket(socket, 'connect', timeoutMs, { what: 'connection' }, 'connect', 'E_BACKEND_CONNECT');
    if (backend.proxyProtocol !== 'off') socket.write(proxyHeader(backend.proxyProtocol, client));
  }
  if (backend.tls !== 'implicit') {
    // Reads land in a shared buffer and reach only the listeners present: none is lost while the
    // socket waits, paused, for the BackendLink, which resumes it when it first waits for a reply.
    socket.pause();
    return { socket, process };
  }

  const secured = tlsConnect({ ...tlsOptions, socket });
  const remaining = Math.max(1, deadline - Date.now());
  await awaitBackendSocket(secured, 'secureConnect', remaining, { what: 'TLS handshake', failOn: ['close'] }, 'tls-handshake', 'E_BACKEND_TLS');
  return { socket: secured, process };
}

/** The header before anything else on the link: the client's addresses, or LOCAL when popwarden speaks for itself. */
function proxyHeader(version: 'v1' | 'v2', client: ClientOrigin | undefined): Buffer {
  if (client === undefined || isIP(client.address) === 0 || isIP(client.localAddress) === 0) return encodeLocalProxyHeader(version);
  return encodeProxyHeader(version, { address: client.address, port: client.port }, { address: client.localAddress, port: client.localPort });
}
