import { performance } from 'node:perf_hooks';
import type { BackendConfig } from '../config/types.js';
import { backendKey } from '../config/backend-keys.js';
import type { ConnectionOptions } from 'node:tls';
import { dialBackend, type BackendConnection } from './dial.js';
import { BackendLink } from './link.js';
import { backendTlsOptions, describeBackendTlsFailure } from './tls-options.js';
import { parseCapabilities } from '../pop3/capabilities.js';
import { MAX_CAPA_LINES } from '../config/limits.js';
import { BackendUnavailableError } from '../errors.js';
import { formatBackendAddress } from '../config/values.js';
import { BackendPrograms } from './programs.js';
import { programProblem } from './program-check.js';
import { createLogger, type Logger } from '../observability/log.js';
import type { Metrics } from '../observability/metrics.js';

/**
 * What one probe found. `reason` is a short stable word for logs when the backend is down;
 * `fix`, when popwarden knows it, the setting that would mend it (a TLS trust problem).
 */
export type ProbeResult =
  | { readonly up: true; readonly durationSeconds: number }
  | { readonly up: false; readonly durationSeconds: number; readonly reason: string; readonly fix?: string };

/** The probe's program (an `exec:` backend) logs nothing: the probe's result says what went wrong. */
const SILENT = createLogger('silent');

/** A greeting longer than this is not a POP3 greeting (RFC 2449 §4: 512 octets per reply line). */
const MAX_GREETING_OCTETS = 512;

/** A failure inside the probe, with the reason word (and fix) it reports. */
class ProbeFailure extends Error {
  constructor(
    readonly reason: string,
    readonly fix?: string,
  ) {
    super(reason);
  }
}

/** The reason word for a link error: what the greeting-only probe always reported. */
function reasonOf(error: unknown, backend: BackendConfig): ProbeFailure {
  if (error instanceof ProbeFailure) return error;
  const tls = describeBackendTlsFailure(error, backend);
  if (tls !== undefined) return new ProbeFailure(tls.reason, tls.fix);
  if (!(error instanceof BackendUnavailableError)) return new ProbeFailure('failed');
  if (error.code === 'E_BACKEND_TIMEOUT') return new ProbeFailure('timeout');
  if (error.code === 'E_BACKEND_CLOSED') return new ProbeFailure('closed');
  return new ProbeFailure(error.step === 'greeting' ? 'greeting-too-long' : 'protocol-error');
}

/**
 * With backend_tls auto or starttls: CAPA, and STLS with a verified handshake when the backend
 * offers it (or must), so that a certificate popwarden would refuse at every login is found now.
 */
async function checkStls(link: BackendLink, backend: BackendConfig, tlsOptions: ConnectionOptions, remaining: () => number): Promise<void> {
  link.send('CAPA');
  const status = (await link.readLine('capa', remaining())).toString('latin1');
  const offered = status.startsWith('+OK') && parseCapabilities(await link.readShortList('capa', remaining(), MAX_CAPA_LINES)).stls;
  link.replyComplete('capa');
  if (!offered) {
    if (backend.tls === 'starttls') throw new ProbeFailure('no-stls', `the backend does not offer STLS: enable it on the backend, or set ${backendKey(backend, 'tls')}: auto`);
    return;
  }
  link.send('STLS');
  if (!(await link.readLine('stls', remaining())).toString('latin1').startsWith('+OK')) throw new ProbeFailure('stls-refused');
  await link.startTls(tlsOptions, remaining());
}

/**
 * One health probe of the backend within `timeoutMs` (the backend connect timeout): connect (TCP,
 * the UNIX socket, or start the program) and a +OK greeting; with backend_tls auto or starttls also
 * CAPA and, where STLS is offered, the TLS handshake with the certificate checked as a login would;
 * then QUIT. It never sends credentials, so it can neither lock an account nor appear in the
 * backend's failed-login logs. `programs` runs an `exec:` backend (default: a private one).
 */
export async function probeBackend(
  backend: BackendConfig,
  timeoutMs: number,
  tlsOptions: ConnectionOptions = backendTlsOptions(backend),
  programs?: BackendPrograms,
): Promise<ProbeResult> {
  if (programs === undefined && backend.address.kind === 'exec') {
    const own = new BackendPrograms(SILENT);
    try {
      return await probeBackend(backend, timeoutMs, tlsOptions, own);
    } finally {
      await own.close();
    }
  }
  const started = performance.now();
  const deadline = Date.now() + timeoutMs;
  const remaining = (): number => Math.max(1, deadline - Date.now());
  const elapsed = (): number => (performance.now() - started) / 1000;
  let link: BackendLink;
  let connection: BackendConnection;
  try {
    const runner = { programs: programs ?? new BackendPrograms(SILENT), limit: 1, log: SILENT };
    connection = await dialBackend(backend, timeoutMs, tlsOptions, undefined, runner);
    link = new BackendLink(connection.socket, () => undefined);
  } catch (error) {
    const tls = describeBackendTlsFailure(error, backend);
    if (tls !== undefined) return { up: false, durationSeconds: elapsed(), reason: tls.reason, fix: tls.fix };
    const code = (error as { code?: string }).code;
    if (code === 'E_BACKEND_EXEC') return { up: false, durationSeconds: elapsed(), reason: 'exec-failed', fix: (error as Error).message };
    return { up: false, durationSeconds: elapsed(), reason: code === 'E_BACKEND_TIMEOUT' ? 'connect-timeout' : 'connect-failed' };
  }
  try {
    const greeting = await link.readLine('greeting', remaining(), MAX_GREETING_OCTETS).catch(async (error: unknown) => {
      if (connection.process === undefined || (error as { code?: string }).code !== 'E_BACKEND_CLOSED') throw error;
      link.destroy();
      throw new ProbeFailure('exited-before-greeting', (await connection.process.earlyExitError()).message);
    });
    if (!greeting.toString('latin1').startsWith('+OK')) throw new ProbeFailure('bad-greeting');
    link.replyComplete('greeting');
    if (backend.tls === 'auto' || backend.tls === 'starttls') await checkStls(link, backend, tlsOptions, remaining);
    const durationSeconds = elapsed();
    // QUIT is a courtesy (no mailbox was opened): its reply is awaited off the result's path.
    link.send('QUIT');
    void link.readLine('quit', Math.min(1_000, remaining())).catch(() => undefined).finally(() => link.destroy());
    return { up: true, durationSeconds };
  } catch (error) {
    link.destroy();
    const failure = reasonOf(error, backend);
    return { up: false, durationSeconds: elapsed(), reason: failure.reason, ...(failure.fix === undefined ? {} : { fix: failure.fix }) };
  }
}

/**
 * Runs probeBackend every `intervalMs` (never two at once) until stopped, and tells what it found:
 * every result to `metrics`, each change between up and down to the log.
 */
export class BackendProber {
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<ProbeResult> | undefined;
  #stopped = false;
  #lastUp: boolean | undefined;

  /** The latest result and when it came, for /readyz. */
  last: { readonly result: ProbeResult; readonly at: number } | undefined;

  /** For a POP3S backend: read once, not on every probe. */
  readonly #tlsOptions: ConnectionOptions;

  /** Runs the program of an `exec:` backend for each probe. */
  readonly #programs: BackendPrograms;

  constructor(
    private readonly backend: BackendConfig,
    private readonly timeoutMs: number,
    private readonly metrics: Pick<Metrics, 'backendProbe'>,
    private readonly log: Logger,
  ) {
    this.#tlsOptions = backendTlsOptions(backend);
    this.#programs = new BackendPrograms(log);
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
    this.#running = probeBackend(this.backend, this.timeoutMs, this.#tlsOptions, this.#programs).then((result) => {
      this.#running = undefined;
      this.last = { result, at: Date.now() };
      if (!this.#stopped) this.#tell(result);
      return result;
    });
    return this.#running;
  }

  #tell(result: ProbeResult): void {
    this.metrics.backendProbe(this.backend.name, result.up, result.durationSeconds);
    if (result.up === this.#lastUp) return;
    const where = { backend: this.backend.name, address: formatBackendAddress(this.backend.address) };
    if (result.up) this.log.info(where, 'backend probe: up');
    else this.log.warn({ ...where, reason: result.reason, fix: result.fix }, 'backend probe: DOWN');
    this.#lastUp = result.up;
  }

  /** Stops the schedule and waits for a probe in flight (bounded by its own timeout). */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
    await this.#programs.close();
  }
}

/**
 * For --check-config: one probe, and the line to print when it found a problem popwarden can
 * name a fix for (a certificate it would refuse at every login, a program that cannot run). A
 * backend that is merely down or unreachable from here is not a configuration error: undefined.
 * A program is checked before it is started: it must exist, be executable, and be out of other
 * users' reach.
 */
export async function backendConfigProblem(backend: BackendConfig, timeoutMs: number): Promise<string | undefined> {
  const address = formatBackendAddress(backend.address);
  // The one-backend form is named by its address, as it always was; named backends by both.
  const name = backend.name === 'default' ? address : `${backend.name} (${address})`;
  if (backend.address.kind === 'exec') {
    const problem = await programProblem(backend.address.command);
    if (problem !== undefined) return `backend ${name}: ${problem}`;
  }
  const result = await probeBackend(backend, timeoutMs);
  if (result.up || result.fix === undefined) return undefined;
  return `backend ${name}: ${result.reason}: ${result.fix}`;
}
