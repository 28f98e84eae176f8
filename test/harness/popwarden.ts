/**
 * Starts popwarden in-process for tests: real listeners on free loopback ports, a certificate made
 * by openssl at test time (never committed), every log line captured for assertions.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as connectTls, createSecureContext } from 'node:tls';
import { connect as connectTcp } from 'node:net';
import { X509Certificate } from 'node:crypto';
import { startPopwarden, type ReloadableProxy } from '../../src/proxy.js';
import type { BackendAddress, BackendConfig, Config, HostPort, LimitsConfig, ListenerConfig, LogLevel, RedisConfig, RoutingConfig, TimeoutsConfig, TlsConfig } from '../../src/config/types.js';
import { createLogger } from '../../src/observability/log.js';
import { loadConfig } from '../../src/config/load.js';
import type { TlsMaterial } from '../../src/net/tls-material.js';
import type { Metrics } from '../../src/observability/metrics.js';
import type { LoginGuard } from '../../src/auth/login-guard.js';
import type { ConnectionGate } from '../../src/net/connection-gate.js';
import type { SharedRedis } from '../../src/auth/rate-limit/shared-redis.js';
import type { FailureDeadline } from '../../src/session/failure-deadline.js';
import { LogCapture, type LogPredicate, type WaitForLogOptions } from './log-capture.js';
import { scratchDir } from './scratch.js';
import { startTap, type Tap } from './tap.js';

/** A certificate for localhost / 127.0.0.1 signed by itself; `caFile` is what clients trust. */
export interface TestCertificate {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
}

let cachedCertificate: TestCertificate | undefined;

/** One self-signed certificate per test process, made with openssl. */
export function testCertificate(): TestCertificate {
  if (cachedCertificate !== undefined) return cachedCertificate;
  const dir = scratchDir('popwarden-cert');
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', keyFile, '-out', certFile,
  ], { stdio: 'ignore' });
  cachedCertificate = { certFile, keyFile, caFile: certFile };
  return cachedCertificate;
}

let cachedStateDir: string | undefined;

/**
 * One private state directory per test process (the generated HMAC key lands there). Not tmpdir()
 * itself: popwarden refuses a state directory that others may write, as /tmp is.
 */
export function testStateDir(): string {
  cachedStateDir ??= scratchDir('popwarden-state');
  return cachedStateDir;
}

/** TLS material for tests, built the way production builds it once tls-context lands. */
export function testTlsMaterial(cert = testCertificate()): TlsMaterial {
  const options = { cert: readFileSync(cert.certFile), key: readFileSync(cert.keyFile), minVersion: 'TLSv1.2' as const };
  return { secureContext: createSecureContext(options), serverOptions: { ...options, handshakeTimeout: 5_000 } };
}

/** A backend: its address, or HOST and PORT for a TCP one (most tests), and any other settings. */
export type BackendOverrides = Partial<BackendConfig> & (Pick<BackendConfig, 'address'> | HostPort);

export interface ProxyOverrides {
  /** The one backend, named `default` (everyone's route); ignored when `backends` is given. */
  readonly backend?: BackendOverrides;
  /** Named backends, each on top of the schema's defaults (trust_loopback on); with `routing`. */
  readonly backends?: readonly (BackendOverrides & Pick<BackendConfig, 'name'>)[];
  readonly routing?: Partial<RoutingConfig>;
  readonly redis?: Partial<RedisConfig>;
  /** What reload() reads (startTestProxy): the test's next config. */
  readonly loadConfig?: () => Config;
  /** Default: one implicit-TLS and one STLS listener on 127.0.0.1, port 0. */
  readonly listeners?: readonly ListenerConfig[];
  readonly timeouts?: Partial<TimeoutsConfig>;
  readonly limits?: Partial<LimitsConfig>;
  readonly authFailureDelayMs?: number;
  readonly greeting?: string;
  /** Default: the system's temp dir in testConfig, a fresh temporary directory in startTestProxy. */
  readonly stateDir?: string;
  readonly metrics?: Metrics;
  readonly guard?: LoginGuard;
  readonly gate?: ConnectionGate;
  /** Redis for the state instances share (backend memory, APOP users): createProtection's. */
  readonly shared?: SharedRedis;
  /** The clock popwarden reads for the ages of connections it may evict (ProxyDependencies.now). */
  readonly now?: () => number;
  /** When failed logins are answered (ProxyDependencies.failureDeadline). */
  readonly failureDeadline?: FailureDeadline;
  /** How long a refusal of an address's rate on the TLS port waits for its close (ProxyDependencies.refusalHoldMs). */
  readonly refusalHoldMs?: number;
  /** The level of the captured logger. Default: trace (every line a test might wait for). */
  readonly logLevel?: LogLevel;
}

/** A running in-process popwarden with one implicit-TLS and one STLS listener. */
export interface TestProxy {
  readonly proxy: ReloadableProxy;
  readonly host: string;
  readonly tlsPort: number;
  readonly stlsPort: number;
  readonly caFile: string;
  /** Every log line so far, as raw JSON text. */
  logText(): string;
  /** Parsed log lines. */
  logs(): Record<string, unknown>[];
  /** Resolves with the first log line, written or still to come, that `predicate` accepts. */
  waitForLog(predicate: LogPredicate, options?: WaitForLogOptions): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

/**
 * The schema's defaults, as the loader maps them onto the runtime Config: testConfig starts from
 * these rather than from a hand-written copy (config-load.test.ts pins them value by value, which
 * is where writing them out belongs), so a new key with a default needs no line here.
 */
const SCHEMA_DEFAULTS: Config = (() => {
  const loaded = loadConfig(['--backend', '127.0.0.1:1'], {});
  if (loaded.action !== 'run') throw new Error(`unexpected action ${loaded.action}`);
  return loaded.config;
})();

/** The schema's defaults for one backend (`default`), not probed unless a test asks. */
const DEFAULT_BACKEND: BackendConfig = { ...SCHEMA_DEFAULTS.backends[0]!, probeIntervalMs: 0 };

/**
 * One backend's settings over the schema's defaults (trust_loopback on), HOST and PORT made an
 * address; `named`: one of `backends:` (its keys are backends.NAME.*), else the one of `backend:`.
 */
function backendFrom(overrides: BackendOverrides, name: string, named: boolean): BackendConfig {
  const { host, port, ...backend } = overrides as Partial<BackendConfig> & Partial<HostPort>;
  const address: BackendAddress = backend.address ?? { kind: 'tcp', host: host ?? '127.0.0.1', port: port ?? 110 };
  return { ...DEFAULT_BACKEND, trustLoopback: true, name, named, ...backend, address };
}

/**
 * The configuration tests start from: short timeouts, no failure delay, loopback only, and the
 * schema's defaults elsewhere. `tls` overrides are for tests that build their own TLS material
 * from the config (startTestProxy serves testTlsMaterial() whatever config.tls says).
 */
export function testConfig(overrides: ProxyOverrides & { readonly tls?: Partial<TlsConfig> }): Config {
  return {
    // redis and rateLimit as well: the limiter in process memory (no redis: configured).
    ...SCHEMA_DEFAULTS,
    listeners: overrides.listeners ?? [
      { kind: 'tls', host: '127.0.0.1', port: 0, name: 'tls:test' },
      { kind: 'stls', host: '127.0.0.1', port: 0, name: 'stls:test' },
    ],
    backends:
      overrides.backends?.map((backend) => backendFrom(backend, backend.name, true)) ??
      (overrides.backend === undefined ? [] : [backendFrom(overrides.backend, 'default', false)]),
    routing: { ...SCHEMA_DEFAULTS.routing, ...(overrides.backends === undefined ? {} : { defaultBackend: undefined }), ...overrides.routing },
    tls: { ...SCHEMA_DEFAULTS.tls, ...overrides.tls },
    stateDir: overrides.stateDir ?? testStateDir(),
    greeting: overrides.greeting ?? 'popwarden test ready',
    authFailureDelayMs: overrides.authFailureDelayMs ?? 0,
    timeouts: {
      preAuthMs: 30_000,
      idleMs: 600_000,
      tlsHandshakeMs: 5_000,
      proxyProtocolMs: 3_000,
      backendConnectMs: 5_000,
      backendStepMs: 5_000,
      backendAuthMs: 30_000,
      backendIdleMs: 10_000,
      clientWriteStallMs: 10_000,
      shutdownMs: 20_000,
      ...overrides.timeouts,
    },
    // No handshake bound unless a test asks for one: parallel clients from 127.0.0.1 are the norm here.
    limits: { ...SCHEMA_DEFAULTS.limits, maxHandshakesPerIp: 0, ...overrides.limits },
    logLevel: 'debug',
    metrics: { listen: undefined, backendProbeIntervalMs: 0 },
    redis: { ...SCHEMA_DEFAULTS.redis, ...overrides.redis },
  };
}

/** Starts popwarden in front of `overrides.backend`. */
export async function startTestProxy(overrides: ProxyOverrides): Promise<TestProxy> {
  const logs = new LogCapture();
  // A state_dir per proxy: the backend memory in it must not carry over between tests whose
  // backends happen to get the same port.
  const config = testConfig({ ...overrides, stateDir: overrides.stateDir ?? scratchDir('popwarden-state') });
  const cert = testCertificate();
  const proxy = await startPopwarden(config, {
    log: createLogger(overrides.logLevel ?? 'trace', logs.stream),
    tls: testTlsMaterial(cert),
    ...(overrides.metrics === undefined ? {} : { metrics: overrides.metrics }),
    ...(overrides.guard === undefined ? {} : { guard: overrides.guard }),
    ...(overrides.gate === undefined ? {} : { gate: overrides.gate }),
    ...(overrides.shared === undefined ? {} : { shared: overrides.shared }),
    ...(overrides.now === undefined ? {} : { now: overrides.now }),
    ...(overrides.failureDeadline === undefined ? {} : { failureDeadline: overrides.failureDeadline }),
    ...(overrides.refusalHoldMs === undefined ? {} : { refusalHoldMs: overrides.refusalHoldMs }),
    // A reload keeps serving the test certificate the client trusts.
    loadTls: () => Promise.resolve(testTlsMaterial(cert)),
    ...(overrides.loadConfig === undefined ? {} : { loadConfig: overrides.loadConfig }),
  });
  const portOf = (kind: 'tls' | 'stls'): number => proxy.listeners.find((l) => l.config.kind === kind)!.address.port;
  return {
    proxy,
    host: '127.0.0.1',
    tlsPort: portOf('tls'),
    stlsPort: portOf('stls'),
    caFile: cert.caFile,
    logText: () => logs.text(),
    logs: () => logs.entries(),
    waitForLog: (predicate, options) => logs.waitFor(predicate, options),
    stop: () => proxy.close(),
  };
}

/**
 * Resolves once every backend program (`exec:` backend) the proxy has started so far has exited;
 * Node reaps a child before it reports the exit, so none is left a zombie by then. Programs whose
 * exit a failed login already reported (gone before their greeting) are not counted.
 */
export async function backendProgramsExited(proxy: TestProxy, timeoutMs = 15_000): Promise<void> {
  const lines = proxy.logs();
  const started = lines.filter((l) => l['msg'] === 'backend program started').length;
  const reportedByLogin = lines.filter((l) => l['code'] === 'E_BACKEND_EXEC' && l['step'] === 'greeting').length;
  let exited = 0;
  if (started - reportedByLogin <= 0) return;
  await proxy.waitForLog((l) => l['msg'] === 'backend program exited' && ++exited >= started - reportedByLogin, { timeoutMs });
}

/** A real POP3 server, a tap on popwarden's link to it, and popwarden in front of the tap. */
export interface Chain<Server> {
  readonly server: Server;
  readonly tap: Tap;
  readonly proxy: TestProxy;
  /** Stops popwarden and the tap; the server is the caller's. */
  stop(): Promise<void>;
}

/** Starts a tap in front of `server` and popwarden in front of the tap, with these backend settings. */
export async function startChain<Server extends { readonly host: string; readonly port: number }>(
  server: Server,
  backend: Omit<BackendOverrides, 'host' | 'port'> = {},
): Promise<Chain<Server>> {
  const tap = await startTap(server.host, server.port);
  const proxy = await startTestProxy({ backend: { host: tap.host, port: tap.port, ...backend } });
  return {
    server,
    tap,
    proxy,
    async stop() {
      await proxy.stop();
      await tap.stop();
    },
  };
}

/** A self-signed certificate for `names` (the first is the CN), made with openssl in `dir`. */
export function makeNamedCertificate(dir: string, label: string, names: readonly string[], days = 2): TestCertificate & { fingerprint256: string } {
  const certFile = join(dir, `${label}.crt`);
  const keyFile = join(dir, `${label}.key`);
  const san = names.map((name) => (/^[\d.]+$/.test(name) ? `IP:${name}` : `DNS:${name}`)).join(',');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', String(days), '-subj', `/CN=${names[0] ?? label}`,
    '-addext', `subjectAltName=${san}`, '-keyout', keyFile, '-out', certFile,
  ], { stdio: 'ignore' });
  return { certFile, keyFile, caFile: certFile, fingerprint256: new X509Certificate(readFileSync(certFile)).fingerprint256 };
}

/**
 * The SHA-256 fingerprint of the certificate popwarden serves on `port`: implicit TLS, or after
 * STLS (`stls: true`); with `servername` as SNI, or no SNI at all when it is undefined.
 */
export async function servedFingerprint(port: number, options: { servername?: string; stls?: boolean } = {}): Promise<string> {
  const sni = options.servername === undefined ? {} : { servername: options.servername };
  let socket: import('node:net').Socket | undefined;
  if (options.stls === true) {
    const plain = connectTcp({ host: '127.0.0.1', port });
    socket = plain;
    await new Promise<void>((resolve, reject) => {
      let text = '';
      let sent = false;
      plain.on('error', reject);
      const onData = (chunk: Buffer): void => {
        text += chunk.toString('latin1');
        if (!sent && text.includes('\r\n')) {
          sent = true;
          text = '';
          plain.write('STLS\r\n');
        } else if (sent && text.includes('\r\n')) {
          plain.off('data', onData);
          plain.off('error', reject);
          if (text.startsWith('+OK')) resolve();
          else reject(new Error(`STLS refused: ${text.trim()}`));
        }
      };
      plain.on('data', onData);
    });
  }
  return new Promise((resolve, reject) => {
    const secured = connectTls(
      { host: '127.0.0.1', port, rejectUnauthorized: false, ...(socket === undefined ? {} : { socket }), ...sni },
      () => {
        const fingerprint = secured.getPeerX509Certificate()?.fingerprint256;
        secured.destroy();
        if (fingerprint === undefined) reject(new Error('no peer certificate'));
        else resolve(fingerprint);
      },
    );
    secured.setTimeout(5_000, () => secured.destroy(new Error('TLS handshake timed out')));
    secured.on('error', reject);
  });
}
