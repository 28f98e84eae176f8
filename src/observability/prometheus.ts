/**
 * The Prometheus implementation of the Metrics events: the only module that imports prom-client
 * (STYLE lesson 13). Every label value is checked against an allow-list, so a client can never
 * grow the number of series: unknown verbs become "other", unknown codes become "other", and no
 * username, client address or session id is ever a label. Gauges that mirror state (active
 * connections, certificate expiry, backend and store health) are computed in collect() at scrape
 * time, from counts kept here.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { TLS_VERSIONS } from '../tls/policy.js';
import type {
  ConnectionRefusal,
  LimiterName,
  ListenerName,
  LoginResult,
  Metrics,
  RelayDirection,
  TlsHandshakeResult,
} from './metrics.js';
import type { CloseReason } from '../session/states.js';

export const METRIC_PREFIX = 'popwarden_';

/** RFC 1939 / 2449 / 2595 verbs (plus the common extensions); anything else is "other". */
export const RELAYED_VERBS = [
  'USER', 'PASS', 'APOP', 'AUTH', 'STLS', 'STAT', 'LIST', 'RETR', 'DELE', 'NOOP', 'RSET', 'QUIT',
  'TOP', 'UIDL', 'CAPA', 'LAST', 'XTND',
] as const;

/** The CloseReason values of session/states.ts. */
export const CLOSE_REASONS = [
  'quit', 'client-closed', 'client-error', 'client-write-stall', 'pre-auth-timeout', 'idle-timeout',
  'tls-handshake-failed', 'tls-on-plaintext-port', 'http-on-pop3-port', 'line-too-long',
  'too-many-invalid-commands', 'backend-closed', 'backend-protocol-error', 'backend-timeout',
  'server-shutdown',
] as const satisfies readonly CloseReason[];

export const BACKEND_ERROR_CODES = [
  'E_BACKEND_CONNECT', 'E_BACKEND_TIMEOUT', 'E_BACKEND_CLOSED', 'E_BACKEND_PROTOCOL', 'E_BACKEND_TLS',
  'E_BACKEND_NO_SAFE_MECHANISM',
] as const;

export const CLIENT_MECHANISMS = ['user', 'plain', 'login', 'apop', 'cram-md5'] as const;
export const BACKEND_MECHANISMS = ['cram-md5', 'apop', 'plain', 'login', 'user'] as const;
const LOGIN_RESULTS: readonly LoginResult[] = ['success', 'failure', 'blocked', 'backend_error'];
const LIMITERS: readonly LimiterName[] = ['user_ip', 'ip', 'user', 'store_unavailable'];
const REFUSALS: readonly ConnectionRefusal[] = [
  'denied', 'too_many_sessions', 'too_many_connections', 'too_many_handshakes', 'max_sessions', 'max_handshakes',
];
const HANDSHAKE_RESULTS: readonly TlsHandshakeResult[] = ['success', 'failure', 'timeout'];
const DIRECTIONS: readonly RelayDirection[] = ['to_client', 'to_backend'];

/** Maps a value onto its allow-list, or "other". */
function allowed(value: string | undefined, list: readonly string[], fallback = 'other'): string {
  return value !== undefined && list.includes(value) ? value : fallback;
}

/** A certificate one listener serves, for the expiry gauge. */
export interface ServedCertificate {
  readonly listener: ListenerName;
  readonly name: string;
  readonly notAfter: Date;
}

export interface PrometheusMetricsOptions {
  /** popwarden's own version, for popwarden_build_info. */
  readonly version: string;
  /** The configured backend as HOST:PORT, the one label of the backend probe gauges. */
  readonly backend?: string;
  /** Listeners known at start, so their series exist (at 0) before the first connection. */
  readonly listeners?: readonly { readonly name: ListenerName; readonly tls: 'implicit' | 'starttls' }[];
  /** Also export prom-client's process_* and nodejs_* metrics (default true). */
  readonly defaultMetrics?: boolean;
}

/** The events popwarden reports beyond the Metrics interface: state that setup.ts owns. */
export interface PrometheusMetrics extends Metrics {
  readonly registry: Registry;
  /** The certificates currently served, per listener (replaces the previous set). */
  setCertificates(certificates: readonly ServedCertificate[]): void;
  /** The result of one backend probe (connect + greeting). */
  backendProbe(up: boolean, durationSeconds: number): void;
  /** The current rate-limit store state, or undefined when none was ever reported. */
  storeUp(): boolean | undefined;
  /** The last backend probe result, or undefined before the first one. */
  lastBackendProbe(): { readonly up: boolean; readonly at: number } | undefined;
  /** The Prometheus text exposition of every metric. */
  render(): Promise<string>;
  readonly contentType: string;
}

/** Seconds buckets for things a person waits for: handshakes, logins, backend connects. */
const WAIT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10];
/** Relayed commands: a STAT takes milliseconds, a RETR of a large message many seconds. */
const COMMAND_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Sessions: from a rejected handshake to a client that stays connected for an hour. */
const SESSION_BUCKETS = [0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600];

/** Builds the metrics with a Registry of their own (never the global one). */
export function createPrometheusMetrics(options: PrometheusMetricsOptions): PrometheusMetrics {
  const registry = new Registry();
  const registers = [registry];
  const p = METRIC_PREFIX;
  const backend = options.backend ?? 'backend';

  // Counts behind the state gauges, read in collect().
  const active = new Map<string, { listener: string; tls: string; count: number }>();
  const listenerMode = new Map<string, 'implicit' | 'starttls'>();
  let certificates: readonly ServedCertificate[] = [];
  let storeState: boolean | undefined;
  let probe: { up: boolean; at: number; durationSeconds: number } | undefined;

  const activeEntry = (listener: string, tls: string): { listener: string; tls: string; count: number } => {
    const key = `${listener}\u0000${tls}`;
    let entry = active.get(key);
    if (entry === undefined) {
      entry = { listener, tls, count: 0 };
      active.set(key, entry);
    }
    return entry;
  };
  const connectionEnded = (listener: string): void => {
    const entry = activeEntry(listener, listenerMode.get(listener) ?? 'implicit');
    entry.count = Math.max(0, entry.count - 1);
  };

  new Gauge({
    name: `${p}build_info`,
    help: 'Always 1; the labels say which popwarden and Node.js versions run.',
    labelNames: ['version', 'node_version'] as const,
    registers,
    collect() {
      this.set({ version: options.version, node_version: process.version }, 1);
    },
  });

  const connections = new Counter({
    name: `${p}connections_total`,
    help: 'TCP connections accepted, by listener and TLS mode (implicit TLS or STLS port).',
    labelNames: ['listener', 'tls'] as const,
    registers,
  });
  new Gauge({
    name: `${p}connections_active`,
    help: 'Client connections open now, by listener and TLS mode.',
    labelNames: ['listener', 'tls'] as const,
    registers,
    collect() {
      this.reset();
      for (const { listener, tls, count } of active.values()) this.set({ listener, tls }, count);
    },
  });
  const refused = new Counter({
    name: `${p}connections_refused_total`,
    help: 'Connections turned away at accept (deny list, per-IP bounds), by listener and reason.',
    labelNames: ['listener', 'reason'] as const,
    registers,
  });
  const handshakes = new Counter({
    name: `${p}tls_handshakes_total`,
    help: 'TLS handshakes (implicit TLS and STLS), by listener, result and negotiated version.',
    labelNames: ['listener', 'result', 'version'] as const,
    registers,
  });
  const handshakeDuration = new Histogram({
    name: `${p}tls_handshake_duration_seconds`,
    help: 'Time from TCP accept (or STLS) to the end of the TLS handshake.',
    labelNames: ['listener'] as const,
    buckets: WAIT_BUCKETS,
    registers,
  });
  const stls = new Counter({
    name: `${p}stls_upgrades_total`,
    help: 'STLS upgrades on plaintext listeners, by result.',
    labelNames: ['listener', 'result'] as const,
    registers,
  });
  const stlsDiscarded = new Counter({
    name: `${p}stls_discarded_lines_total`,
    help: 'Command lines a client pipelined behind STLS, thrown away before the handshake (injection defence).',
    labelNames: ['listener'] as const,
    registers,
  });
  const logins = new Counter({
    name: `${p}login_attempts_total`,
    help: 'Complete login attempts, by client mechanism, backend mechanism ("none" when the backend was not reached) and result.',
    labelNames: ['client_mechanism', 'backend_mechanism', 'result'] as const,
    registers,
  });
  const loginDuration = new Histogram({
    name: `${p}login_duration_seconds`,
    help: 'Time from complete credentials to the reply, failure delay included, by result.',
    labelNames: ['result'] as const,
    buckets: WAIT_BUCKETS,
    registers,
  });
  const rejections = new Counter({
    name: `${p}ratelimit_rejections_total`,
    help: 'Logins refused by a limiter, by limiter.',
    labelNames: ['limiter'] as const,
    registers,
  });
  // Labelled so that the series can be absent: prom-client always exports an unlabelled gauge.
  new Gauge({
    name: `${p}ratelimit_store_up`,
    help: '1 when the shared rate-limit store answers, 0 when the fallback is in use; absent when no store is configured.',
    labelNames: ['store'] as const,
    registers,
    collect() {
      this.reset();
      if (storeState !== undefined) this.set({ store: 'redis' }, storeState ? 1 : 0);
    },
  });
  const storeErrors = new Counter({
    name: `${p}ratelimit_store_errors_total`,
    help: 'Failed calls to the rate-limit store.',
    registers,
  });
  const backendConnect = new Histogram({
    name: `${p}backend_connect_duration_seconds`,
    help: 'TCP connect time to the backend, for logins.',
    buckets: WAIT_BUCKETS,
    registers,
  });
  const backendErrors = new Counter({
    name: `${p}backend_errors_total`,
    help: 'Backend failures during logins and relaying, by stable error code.',
    labelNames: ['reason'] as const,
    registers,
  });
  new Gauge({
    name: `${p}backend_up`,
    help: '1 when the last backend probe connected and read a +OK greeting within the connect timeout; absent until the first probe.',
    labelNames: ['backend'] as const,
    registers,
    collect() {
      this.reset();
      if (probe !== undefined) this.set({ backend }, probe.up ? 1 : 0);
    },
  });
  const probes = new Counter({
    name: `${p}backend_probes_total`,
    help: 'Backend health probes, by result.',
    labelNames: ['result'] as const,
    registers,
  });
  new Gauge({
    name: `${p}backend_probe_duration_seconds`,
    help: 'How long the last backend probe took (connect + greeting).',
    labelNames: ['backend'] as const,
    registers,
    collect() {
      this.reset();
      if (probe !== undefined) this.set({ backend }, probe.durationSeconds);
    },
  });
  const commands = new Counter({
    name: `${p}commands_total`,
    help: 'Commands relayed after login, by verb ("other" for verbs outside RFC 1939/2449).',
    labelNames: ['verb'] as const,
    registers,
  });
  const commandDuration = new Histogram({
    name: `${p}command_duration_seconds`,
    help: 'Round trip of a relayed command: sent to the backend until its whole reply reached the client.',
    labelNames: ['verb'] as const,
    buckets: COMMAND_BUCKETS,
    registers,
  });
  const bytes = new Counter({
    name: `${p}relay_bytes_total`,
    help: 'Bytes relayed after login, by direction.',
    labelNames: ['direction'] as const,
    registers,
  });
  const sessionDuration = new Histogram({
    name: `${p}session_duration_seconds`,
    help: 'Lifetime of client sessions, by listener.',
    labelNames: ['listener'] as const,
    buckets: SESSION_BUCKETS,
    registers,
  });
  const sessionsClosed = new Counter({
    name: `${p}sessions_closed_total`,
    help: 'Sessions ended, by listener and reason.',
    labelNames: ['listener', 'reason'] as const,
    registers,
  });
  new Gauge({
    name: `${p}tls_certificate_not_after_timestamp_seconds`,
    help: 'When the certificate a listener serves expires (Unix time).',
    labelNames: ['listener', 'name'] as const,
    registers,
    collect() {
      this.reset();
      for (const c of certificates) this.set({ listener: c.listener, name: c.name }, Math.floor(c.notAfter.getTime() / 1000));
    },
  });
  const reloads = new Counter({
    name: `${p}config_reloads_total`,
    help: 'Configuration reloads, by result.',
    labelNames: ['result'] as const,
    registers,
  });
  const lastReloadOk = new Gauge({
    name: `${p}config_last_reload_successful`,
    help: 'Whether the last configuration reload succeeded (1 at start).',
    registers,
  });
  const lastReloadTime = new Gauge({
    name: `${p}config_last_reload_success_timestamp_seconds`,
    help: 'When the configuration was last loaded successfully (start time until a reload).',
    registers,
  });

  // Series that dashboards and alerts divide by exist from the start, at 0.
  lastReloadOk.set(1);
  lastReloadTime.set(Math.floor(Date.now() / 1000));
  for (const result of ['success', 'failure']) reloads.inc({ result }, 0);
  storeErrors.inc(0);
  for (const direction of DIRECTIONS) bytes.inc({ direction }, 0);
  for (const result of ['success', 'failure']) probes.inc({ result }, 0);
  for (const result of LOGIN_RESULTS) loginDuration.zero({ result });
  // Attacks start with a burst: a series born mid-burst loses its first increase to rate().
  for (const limiter of LIMITERS) rejections.inc({ limiter }, 0);
  for (const client_mechanism of ['user', 'plain', 'login']) {
    for (const result of ['blocked', 'backend_error']) logins.inc({ client_mechanism, backend_mechanism: 'none', result }, 0);
  }
  for (const { name, tls } of options.listeners ?? []) {
    listenerMode.set(name, tls);
    connections.inc({ listener: name, tls }, 0);
    activeEntry(name, tls);
    for (const result of ['failure', 'timeout']) handshakes.inc({ listener: name, result, version: 'none' }, 0);
  }

  if (options.defaultMetrics !== false) {
    collectDefaultMetrics({ register: registry });
    // prom-client exports these three gauges with a counter's _total suffix, which promtool
    // rejects; the same numbers remain, split by handle type, in nodejs_active_handles etc.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
      registry.removeSingleMetric(name);
    }
  }

  return {
    registry,
    contentType: registry.contentType,
    render: () => registry.metrics(),

    connectionOpened(listener, tls) {
      listenerMode.set(listener, tls);
      connections.inc({ listener, tls });
      activeEntry(listener, tls).count += 1;
    },
    connectionRefused(listener, reason) {
      refused.inc({ listener, reason: allowed(reason, REFUSALS) });
    },
    sessionClosed(listener, reason, durationSeconds) {
      connectionEnded(listener);
      sessionsClosed.inc({ listener, reason: allowed(reason, CLOSE_REASONS) });
      sessionDuration.observe({ listener }, durationSeconds);
    },
    tlsHandshake(listener, result, version, durationSeconds) {
      const res = allowed(result, HANDSHAKE_RESULTS);
      const ver = result === 'success' ? allowed(version, TLS_VERSIONS) : 'none';
      handshakes.inc({ listener, result: res, version: ver });
      handshakeDuration.observe({ listener }, durationSeconds);
      // A failed handshake on an implicit-TLS port ends the connection before any session exists
      // (no sessionClosed follows); a failed STLS handshake closes its session, which reports it.
      if (result !== 'success' && listenerMode.get(listener) === 'implicit') connectionEnded(listener);
    },
    stlsUpgrade(listener, result, discardedLines) {
      stls.inc({ listener, result: result === 'success' ? 'success' : 'failure' });
      if (discardedLines > 0) stlsDiscarded.inc({ listener }, discardedLines);
    },
    loginAttempt(clientMechanism, backendMechanism, result, durationSeconds) {
      const res = allowed(result, LOGIN_RESULTS);
      logins.inc({
        client_mechanism: allowed(clientMechanism, CLIENT_MECHANISMS),
        backend_mechanism: backendMechanism === undefined ? 'none' : allowed(backendMechanism, BACKEND_MECHANISMS),
        result: res,
      });
      loginDuration.observe({ result: res }, durationSeconds);
    },
    rateLimitRejection(limiter) {
      rejections.inc({ limiter: allowed(limiter, LIMITERS) });
    },
    rateLimitStoreUp(up) {
      storeState = up;
    },
    rateLimitStoreError() {
      storeErrors.inc();
    },
    backendConnected(durationSeconds) {
      backendConnect.observe(durationSeconds);
    },
    backendError(code) {
      backendErrors.inc({ reason: allowed(code, BACKEND_ERROR_CODES) });
    },
    commandRelayed(verb, durationSeconds) {
      const v = allowed(verb.toUpperCase(), RELAYED_VERBS);
      commands.inc({ verb: v });
      commandDuration.observe({ verb: v }, durationSeconds);
    },
    bytesRelayed(direction, count) {
      if (count > 0) bytes.inc({ direction: allowed(direction, DIRECTIONS) }, count);
    },
    configReload(success) {
      reloads.inc({ result: success ? 'success' : 'failure' });
      lastReloadOk.set(success ? 1 : 0);
      if (success) lastReloadTime.set(Math.floor(Date.now() / 1000));
    },

    setCertificates(list) {
      certificates = [...list];
    },
    backendProbe(up, durationSeconds) {
      probe = { up, at: Date.now(), durationSeconds };
      probes.inc({ result: up ? 'success' : 'failure' });
    },
    storeUp: () => storeState,
    lastBackendProbe: () => (probe === undefined ? undefined : { up: probe.up, at: probe.at }),
  };
}
