import { connect, type Socket } from 'node:net';
import { BackendUnavailableError } from '../errors.js';
import type { HostPort } from '../config/types.js';
import { DeadlineError, onceWithin } from '../net/once-within.js';

/** Opens a TCP connection to the backend, or fails with E_BACKEND_CONNECT / E_BACKEND_TIMEOUT. */
export async function dialBackend(target: HostPort, timeoutMs: number, sourceAddress?: string): Promise<Socket> {
  const socket = connect({
    host: target.host,
    port: target.port,
    ...(sourceAddress === undefined ? {} : { localAddress: sourceAddress }),
  });
  socket.setNoDelay(true);
  try {
    await onceWithin(socket, 'connect', timeoutMs, { what: 'connection' });
    return socket;
  } catch (error) {
    socket.destroy();
    const code = error instanceof DeadlineError ? 'E_BACKEND_TIMEOUT' : 'E_BACKEND_CONNECT';
    throw new BackendUnavailableError(code, 'connect', (error as Error).message, { cause: error });
  }
}
