import type { Socket } from 'node:net';
import { BackendUnavailableError, type BackendErrorCode, type BackendStep } from '../errors.js';
import { DeadlineError, onceWithin } from '../net/once-within.js';

/**
 * Waits for a backend socket's `event` (connected, handshake done) within `timeoutMs`. On failure
 * the socket is destroyed and the failure becomes the backend error of `step`: E_BACKEND_TIMEOUT
 * when the time ran out, `failure` otherwise (a refused connection, a failed handshake).
 */
export async function awaitBackendSocket(
  socket: Socket,
  event: string,
  timeoutMs: number,
  wait: { readonly what: string; readonly failOn?: readonly string[] },
  step: BackendStep,
  failure: Extract<BackendErrorCode, 'E_BACKEND_CONNECT' | 'E_BACKEND_TLS'>,
): Promise<void> {
  try {
    await onceWithin(socket, event, timeoutMs, wait);
  } catch (error) {
    socket.destroy();
    const code = error instanceof DeadlineError ? 'E_BACKEND_TIMEOUT' : failure;
    throw new BackendUnavailableError(code, step, (error as Error).message, { cause: error });
  }
}
