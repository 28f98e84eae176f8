import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { BackendUnavailableError } from '../errors.js';
import type { BackendConfig } from '../config/types.js';
import type { Logger } from '../observability/log.js';
import { DeadlineError, onceWithin } from '../net/once-within.js';
import { backendReadOptions } from './link.js';
import type { BackendProcess, BackendPrograms, ClientEndpoints } from './programs.js';

/** What an `exec:` backend needs to start its program for one session. */
export interface ProgramContext {
  readonly programs: BackendPrograms;
  /** limits.max_backend_processes */
  readonly limit: number;
  /** The client's connection, for the program's environment; undefined for the health probe. */
  readonly client: ClientEndpoints | undefined;
  readonly log: Logger;
}

/** A fresh backend connection, and the program behind it for an `exec:` backend. */
export interface BackendConnection {
  readonly socket: Socket;
  readonly process: BackendProcess | undefined;
}

/**
 * Opens a connection to the backend: TCP, a UNIX socket, or a program started with the socket as
 * its stdin and stdout; for `backend_tls: implicit` the TLS handshake too, verified as
 * `tlsOptions` say, all within `timeoutMs`. Fails with E_BACKEND_CONNECT, E_BACKEND_TIMEOUT,
 * E_BACKEND_TLS, or for a program E_BACKEND_EXEC and E_BACKEND_BUSY.
 */
export async function dialBackend(
  backend: BackendConfig,
  timeoutMs: number,
  tlsOptions: ConnectionOptions,
  programContext: ProgramContext,
): Promise<BackendConnection> {
  const deadline = Date.now() + timeoutMs;
  const { address } = backend;
  let socket: Socket;
  let process: BackendProcess | undefined;
  if (address.kind === 'exec') {
    const { limit, client, log } = programContext;
    ({ socket, process } = await programContext.programs.start(address, { limit, client, log, timeoutMs }));
  } else {
    socket = connect({
      ...(address.kind === 'unix' ? { path: address.path } : { host: address.host, port: address.port }),
      // Reads into one shared buffer instead of a fresh 64 KiB one each (see backendReadOptions).
      onread: backendReadOptions,
      ...(backend.sourceAddress === undefined || address.kind !== 'tcp' ? {} : { localAddress: backend.sourceAddress }),
    });
    if (address.kind === 'tcp') socket.setNoDelay(true);
    try {
      await onceWithin(socket, 'connect', timeoutMs, { what: 'connection' });
    } catch (error) {
      socket.destroy();
      const code = error instanceof DeadlineError ? 'E_BACKEND_TIMEOUT' : 'E_BACKEND_CONNECT';
      throw new BackendUnavailableError(code, 'connect', (error as Error).message, { cause: error });
    }
  }
  if (backend.tls !== 'implicit') {
    // Reads land in a shared buffer and reach only the listeners present: none is lost while the
    // socket waits, paused, for the BackendLink, which resumes it when it first waits for a reply.
    socket.pause();
    return { socket, process };
  }

  const secured = tlsConnect({ ...tlsOptions, socket });
  try {
    await onceWithin(secured, 'secureConnect', Math.max(1, deadline - Date.now()), { what: 'TLS handshake', failOn: ['close'] });
    return { socket: secured, process };
  } catch (error) {
    secured.destroy();
    const code = error instanceof DeadlineError ? 'E_BACKEND_TIMEOUT' : 'E_BACKEND_TLS';
    throw new BackendUnavailableError(code, 'tls-handshake', (error as Error).message, { cause: error });
  }
}
