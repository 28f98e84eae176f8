import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { BackendConfig } from '../config/types.js';
import type { ConnectionOptions } from 'node:tls';
import { dialBackend } from '../backend/dial.js';
import { backendTlsOptions } from '../backend/tls-options.js';

/** What one probe found. `reason` is a short stable word for logs when the backend is down. */
export type ProbeResult =
  | { readonly up: true; readonly durationSeconds: number }
  | { readonly up: false; readonly durationSeconds: number; readonly reason: string };

/** A greeting longer than this is not a POP3 greeting (RFC 2449 §4: 512 octets per reply line). */
const MAX_GREETING_OCTETS = 512;

/**
 * Reads the first line the server sends, within what is left of the deadline. Resolves with the
 * line (without CRLF), or rejects with a reason word.
 */
function readGreeting(socket: Socket, deadline: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const finish = (error: string | undefined, lineText?: string): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onClose);
      if (error === undefined) resolve(lineText ?? '');
      else reject(new Error(error));
    };
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf(0x0a);
      if (end >= 0) finish(undefined, buffered.subarray(0, end).toString('latin1').replace(/\r$/, ''));
      else if (buffered.length > MAX_GREETING_OCTETS) finish('greeting-too-long');
    };
    const onClose = (): void => finish('closed');
    const timer = setTimeout(() => finish('timeout'), Math.max(0, deadline - performance.now()));
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.once('error', onClose);
  });
}

/**
 * One health probe of the backend: TCP connect and a +OK greeting, both within `timeoutMs`
 * (the backend connect timeout), then QUIT and close. It never sends credentials, so it can
 * neither lock an account nor appear in the backend's failed-login logs.
 */
export async function probeBackend(
  backend: BackendConfig,
  timeoutMs: number,
  tlsOptions: ConnectionOptions = backendTlsOptions(backend),
): Promise<ProbeResult> {
  const started = performance.now();
  const deadline = started + timeoutMs;
  const elapsed = (): number => (performance.now() - started) / 1000;
  let socket: Socket;
  try {
    socket = await dialBackend(backend, timeoutMs, tlsOptions);
  } catch (error) {
    const code = (error as { code?: string }).code;
    return { up: false, durationSeconds: elapsed(), reason: code === 'E_BACKEND_TIMEOUT' ? 'connect-timeout' : 'connect-failed' };
  }
  socket.on('error', () => undefined);
  try {
    const greeting = await readGreeting(socket, deadline);
    if (!greeting.startsWith('+OK')) return { up: false, durationSeconds: elapsed(), reason: 'bad-greeting' };
    const durationSeconds = elapsed();
    socket.end('QUIT\r\n');
    return { up: true, durationSeconds };
  } catch (error) {
    return { up: false, durationSeconds: elapsed(), reason: (error as Error).message };
  } finally {
    // QUIT is a courtesy: the reply is not awaited, and the socket is gone shortly either way.
    socket.setTimeout(1_000, () => socket.destroy());
    if (socket.writableEnded === false) socket.destroy();
  }
}

/** Runs probeBackend every `intervalMs` (never two at once) until stopped. */
export class BackendProber {
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<ProbeResult> | undefined;
  #stopped = false;

  /** For a POP3S backend: read once, not on every probe. */
  readonly #tlsOptions: ConnectionOptions;

  constructor(
    private readonly backend: BackendConfig,
    private readonly timeoutMs: number,
    private readonly onResult: (result: ProbeResult) => void,
  ) {
    this.#tlsOptions = backendTlsOptions(backend);
  }

  /** Probes now, then every `intervalMs` (0: only on demand through probeNow()). */
  start(intervalMs: number): void {
    if (intervalMs <= 0) return;
    const tick = (): void => {
      void this.probeNow().finally(() => {
        if (!this.#stopped) this.#timer = setTimeout(tick, intervalMs);
      });
    };
    tick();
  }

  /** One probe now; a probe already running is shared rather than doubled. */
  probeNow(): Promise<ProbeResult> {
    if (this.#running !== undefined) return this.#running;
    this.#running = probeBackend(this.backend, this.timeoutMs, this.#tlsOptions).then((result) => {
      this.#running = undefined;
      if (!this.#stopped) this.onResult(result);
      return result;
    });
    return this.#running;
  }

  /** Stops the schedule and waits for a probe in flight (bounded by its own timeout). */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }
}
