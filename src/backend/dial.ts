import { connect, type Socket } from 'node:net';
import { BackendUnavailableError } from '../errors.js';
import type { HostPort } from '../config/types.js';

/** Opens a TCP connection to the backend, or fails with E_BACKEND_CONNECT / E_BACKEND_TIMEOUT. */
export function dialBackend(target: HostPort, timeoutMs: number, sourceAddress?: string): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const socket = connect({
      host: target.host,
      port: target.port,
      ...(sourceAddress === undefined ? {} : { localAddress: sourceAddress }),
    });
    socket.setNoDelay(true);
    const timer = setTimeout(() => {
      cleanup();
      socket.destroy();
      reject(new BackendUnavailableError('E_BACKEND_TIMEOUT', 'connect', `no connection within ${timeoutMs} ms`));
    }, timeoutMs);
    const onConnect = (): void => {
      cleanup();
      resolve(socket);
    };
    const onError = (error: Error): void => {
      cleanup();
      socket.destroy();
      reject(new BackendUnavailableError('E_BACKEND_CONNECT', 'connect', error.message, { cause: error }));
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      socket.off('connect', onConnect);
      socket.off('error', onError);
    };
    socket.once('connect', onConnect);
    socket.once('error', onError);
  });
}
