/**
 * The Prometheus implementation of the Metrics events: with prepared-series.ts, the only code that
 * uses prom-client (STYLE lesson 13). Every label value is checked against an allow-list, so a
 * client can never grow the number of series: unknown verbs become "other", unknown codes become
 * "other", and no username, client address or session id is ever a label. The allow-lists are the
 * domain's own constants (close reasons, limiter names, backend error codes, TLS versions). Gauges
 * that mirror state (active connections, certificate expiry, backend and store health) are
 * computed in collect() at scrape time, from counts kept here.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { TLS_VERSIONS } from '../tls/policy.js';
import { BACKEND_ERROR_CODES } from '../errors.js';
import { CLOSE_REASONS } from '../session/close-reasons.js';
import { LIMITER_NAMES_ALL } from '../auth/limiter-names.js';
import {
  CONNECTION_REFUSALS,
  LOGIN_RESULTS,
  RELAY_DIRECTIONS,
  ROUTE_LOOKUP_RESULTS,
  ROUTE_SOURCE_NAMES,
  TLS_HANDSHAKE_RESULTS,
  type ListenerName,
  type Metrics,
} from './metrics.js';
import { prepareCounter, prepareHistogram, type Labels, type PreparedCounter, type PreparedHistogram } from './prepared-series.js';

export { BACKEND_ERROR_CODES, CLOSE_REASONS };

export const METRIC_PREFIX = 'popwarden_';

/** RFC 1939 / 2449 / 2595 verbs (plus the common extensions); anything else is "other". */
export const RELAYED_VERBS = [
  'USER', 'PASS', 'APOP', 'AUTH', 'STLS', 'STAT', 'LIST', 'RETR', 'DELE', 'NOOP', 'RSET', 'QUIT',
  'TOP', 'UIDL', 'CAPA', 'LAST', 'XTND',
] as const;

export const CLIENT_MECHANISMS = ['user', 'plain', 'login', 'apop', 'cram-md5'] as const;
export const BACKEND_MECHANISMS = ['cram-md5', 'apop', 'plain', 'login', 'user'] as const;

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
  /** The configured backends' names: the only values of the backend label (the probe reports nothing else). */
  readonly backends?: readonly string[];
  /** Listeners known at start, so their series exist (at 0) before the first connection. */
  readonly listeners?: readonly { readonly name: ListenerName; readonly tls: 'implicit' | 'starttls' }[];
  /** Also export prom-client's process_* and nodejs_* metrics (default true). */
  readonly defaultMetrics?: boolean;
}

/** The events popwarden reports beyond the Metrics interface: state that wiring/observability.ts owns. */
export interface PrometheusMetrics extends Metrics {
  readonly registry: Registry;
  /** The certificates currently served, per listener (replaces the previous set). */
  setCertificates(certificates: readonly ServedCertificate[]): void;
  /** The current rate-limit store state, or undefined when none was ever reported. */
  storeUp(): boolean | undefined;
  /** After a reload: the backends now configured; the series of the others go. */
  setBackends(names: readonly string[]): void;
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

type Family =
  | { readonly type: 'counter' | 'gauge'; readonly help: string; readonly labels?: readonly string[] }
  | { readonly type: 'histogram'; readonly help: string; readonly labels?: readonly string[]; readonly buckets: readonly number[] };

/** Every metric popwarden exports, in exposition order, by its name after METRIC_PREFIX. */
const FAMILIES = {
  build_info: { type: 'gauge', help: 'Always 1; the labels say which popwarden and Node.js versions run.', labels: ['version', 'node_version'] },
  connections_total: { type: 'counter', help: 'TCP connections accepted, by listener and TLS mode (implicit TLS or STLS port).', labels: ['listener', 'tls'] },
  connections_active: { type: 'gauge', help: 'Client connections open now, by listener and TLS mode.', labels: ['listener', 'tls'] },
  connections_refused_total: { type: 'counter', help: 'Connections turned away at accept (deny list, per-IP and process bounds, a bad or missing PROXY header), by listener and reason.', labels: ['listener', 'reason'] },
  tls_handshakes_total: { type: 'counter', help: 'TLS handshakes (implicit TLS and STLS), by listener, result and negotiated version.', labels: ['listener', 'result', 'version'] },
  tls_handshake_duration_seconds: { type: 'histogram', help: 'Time from TCP accept (or STLS) to the end of the TLS handshake.', labels: ['listener'], buckets: WAIT_BUCKETS },
  stls_upgrades_total: { type: 'counter', help: 'STLS upgrades on plaintext listeners, by result.', labels: ['listener', 'result'] },
  stls_discarded_lines_total: { type: 'counter', help: 'Command lines a client pipelined behind STLS, thrown away before the handshake (injection defence).', labels: ['listener'] },
  login_attempts_total: { type: 'counter', help: 'Complete login attempts, by client mechanism, backend mechanism ("none" when the backend was not reached) and result.', labels: ['client_mechanism', 'backend_mechanism', 'result'] },
  login_duration_seconds: { type: 'histogram', help: 'Time from complete credentials to the reply, failure delay included, by result.', labels: ['result'], buckets: WAIT_BUCKETS },
  ratelimit_rejections_total: { type: 'counter', help: 'Logins refused by a limiter, by limiter.', labels: ['limiter'] },
  // Labelled so that the series can be absent: prom-client always exports an unlabelled gauge.
  ratelimit_store_up: { type: 'gauge', help: '1 when the shared rate-limit store answers, 0 when the fallback is in use; absent when no store is configured.', labels: ['store'] },
  ratelimit_store_errors_total: { type: 'counter', help: 'Failed calls to the rate-limit store.' },
  ratelimit_store_outages_total: { type: 'counter', help: 'Times the rate-limit store went down (a failed or timed-out call, a lost connection) and the fallback took over.' },
  backend_connect_duration_seconds: { type: 'histogram', help: 'TCP connect time to the backend, for logins.', buckets: WAIT_BUCKETS },
  backend_errors_total: { type: 'counter', help: 'Backend failures during logins, relayed commands and idle sessions, by stable error code.', labels: ['reason'] },
  backend_up: { type: 'gauge', help: '1 when the last probe of the backend (by configured name) connected and read a +OK greeting within the connect timeout; absent until its first probe.', labels: ['backend'] },
  backend_probes_total: { type: 'counter', help: 'Backend health probes, by backend (configured name) and result.', labels: ['backend', 'result'] },
  backend_probe_duration_seconds: { type: 'gauge', help: 'How long the last probe of the backend took (connect + greeting).', labels: ['backend'] },
  route_lookups_total: { type: 'counter', help: 'Route sources asked for a login\'s backend, by source and result (hit, miss, refused by auth_http, error: failed or named no configured backend).', labels: ['source', 'result'] },
  commands_total: { type: 'counter', help: 'Commands relayed after login, by verb ("other" for verbs outside RFC 1939/2449).', labels: ['verb'] },
  command_duration_seconds: { type: 'histogram', help: 'Round trip of a relayed command: sent to the backend until its whole reply reached the client.', labels: ['verb'], buckets: COMMAND_BUCKETS },
  relay_bytes_total: { type: 'counter', help: 'Bytes relayed after login, by direction.', labels: ['direction'] },
  session_duration_seconds: { type: 'histogram', help: 'Lifetime of client sessions, by listener.', labels: ['listener'], buckets: SESSION_BUCKETS },
  sessions_closed_total: { type: 'counter', help: 'Sessions ended, by listener and reason.', labels: ['listener', 'reason'] },
  tls_certificate_not_after_timestamp_seconds: { type: 'gauge', help: 'When the certificate a listener serves expires (Unix time).', labels: ['listener', 'name'] },
  config_reloads_total: { type: 'counter', help: 'Configuration reloads, by result.', labels: ['result'] },
  config_last_reload_successful: { type: 'gauge', help: 'Whether the last configuration reload succeeded (1 at start).' },
  config_last_reload_success_timestamp_seconds: { type: 'gauge', help: 'When the configuration was last loaded successfully (start time until a reload).' },
} as const satisfies Record<string, Family>;

type Families = typeof FAMILIES;
type Declared = {
  readonly [K in keyof Families]: Families[K]['type'] extends 'counter' ? Counter<string>
    : Families[K]['type'] extends 'histogram' ? Histogram<string> : Gauge<string>;
};
/** A gauge read at scrape time: the samples it has now (the previous ones are dropped). */
type Reading = () => Iterable<readonly [Labels, number]>;

/** Creates every family of FAMILIES in `registry`; the gauges in `readings` are read at scrape time. */
function declare(registry: Registry, readings: { readonly [K in keyof Families]?: Reading }): Declared {
  const declared: Record<string, Counter<string> | Gauge<string> | Histogram<string>> = {};
  for (const [key, family] of Object.entries(FAMILIES) as [keyof Families, Family][]) {
    const common = { name: `${METRIC_PREFIX}${key}`, help: family.help, labelNames: family.labels ?? [], registers: [registry] };
    const read = readings[key];
    if (family.type === 'counter') declared[key] = new Counter(common);
    else if (family.type === 'histogram') declared[key] = new Histogram({ ...common, buckets: [...family.buckets] });
    else if (read === undefined) declared[key] = new Gauge(common);
    else {
      declared[key] = new Gauge({
        ...common,
        collect() {
          this.reset();
          for (const [labels, value] of read()) this.set(labels, value);
        },
      });
    }
  }
  return declared as Declared;
}

/** A value computed once per key: the caller keeps the keys bounded (allow-listed or configured). */
function memo<V>(make: (key: string) => V): (key: string) => V {
  const made = new Map<string, V>();
  return (key) => {
    let value = made.get(key);
    if (value === undefined) {
      value = make(key);
      made.set(key, value);
    }
    return value;
  };
}

/** Builds the metrics with a Registry of their own (never the global one). */
export function createPrometheusMetrics(options: PrometheusMetricsOptions): PrometheusMetrics {
  const registry = new Registry();
  let backends = new Set(options.backends ?? []);

  // Counts behind the state gauges, read in collect().
  const active = new Map<string, { listener: string; tls: string; count: number }>();
  const listenerMode = new Map<string, 'implicit' | 'starttls'>();
  let certificates: readonly ServedCertificate[] = [];
  let storeState: boolean | undefined;
  const probes = new Map<string, { up: boolean; durationSeconds: number }>();

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

  const m = declare(registry, {
    build_info: () => [[{ version: options.version, node_version: process.version }, 1]],
    connections_active: () => [...active.values()].map(({ listener, tls, count }) => [{ listener, tls }, count] as const),
    ratelimit_store_up: () => (storeState === undefined ? [] : [[{ store: 'redis' }, storeState ? 1 : 0]]),
    backend_up: () => [...probes].map(([backend, probe]) => [{ backend }, probe.up ? 1 : 0] as const),
    backend_probe_duration_seconds: () => [...probes].map(([backend, probe]) => [{ backend }, probe.durationSeconds] as const),
    tls_certificate_not_after_timestamp_seconds: () =>
      certificates.map((c) => [{ listener: c.listener, name: c.name }, Math.floor(c.notAfter.getTime() / 1000)] as const),
  });

  // The series updated per relayed command or per session, prepared once per verb, direction and
  // listener so that those paths do no label hashing (issue 10). Keys are bounded: verbs and
  // directions by their allow-lists, listeners and close reasons by the configuration and CLOSE_REASONS.
  const verbSeries = memo((verb): { readonly count: PreparedCounter; readonly duration: PreparedHistogram } => ({
    count: prepareCounter(m.commands_total, { verb }),
    duration: prepareHistogram(m.command_duration_seconds, { verb }, COMMAND_BUCKETS),
  }));
  const knownVerbs = new Set<string>(RELAYED_VERBS);
  const bytesSeries = memo((direction) => prepareCounter(m.relay_bytes_total, { direction }));
  const knownDirections = new Set<string>(RELAY_DIRECTIONS);
  const sessionSeries = memo((listener) => ({
    duration: prepareHistogram(m.session_duration_seconds, { listener }, SESSION_BUCKETS),
    closed: memo((reason) => prepareCounter(m.sessions_closed_total, { listener, reason })),
  }));
  const knownCloseReasons = new Set<string>(CLOSE_REASONS);
  // Per refused connection, which a flood makes thousands a second (issue 14.3).
  const refusedSeries = memo((listener) => memo((reason) => prepareCounter(m.connections_refused_total, { listener, reason })));

  // Series that dashboards and alerts divide by exist from the start, at 0.
  m.config_last_reload_successful.set(1);
  m.config_last_reload_success_timestamp_seconds.set(Math.floor(Date.now() / 1000));
  for (const result of ['success', 'failure']) m.config_reloads_total.inc({ result }, 0);
  m.ratelimit_store_errors_total.inc(0);
  m.ratelimit_store_outages_total.inc(0);
  for (const direction of RELAY_DIRECTIONS) bytesSeries(direction);
  /** The probe counters of one configured backend, at 0 until its first probe (rate() sees the first failure). */
  const zeroProbes = (backend: string): void => {
    for (const result of ['success', 'failure']) m.backend_probes_total.inc({ backend, result }, 0);
  };
  for (const backend of backends) zeroProbes(backend);
  for (const result of ['hit', 'miss']) m.route_lookups_total.inc({ source: 'default', result }, 0);
  for (const result of LOGIN_RESULTS) m.login_duration_seconds.zero({ result });
  // Attacks start with a burst: a series born mid-burst loses its first increase to rate().
  for (const limiter of LIMITER_NAMES_ALL) m.ratelimit_rejections_total.inc({ limiter }, 0);
  for (const client_mechanism of ['user', 'plain', 'login']) {
    for (const result of ['blocked', 'backend_error']) {
      m.login_attempts_total.inc({ client_mechanism, backend_mechanism: 'none', result }, 0);
    }
  }
  for (const { name, tls } of options.listeners ?? []) {
    listenerMode.set(name, tls);
    m.connections_total.inc({ listener: name, tls }, 0);
    activeEntry(name, tls);
    for (const result of ['failure', 'timeout']) m.tls_handshakes_total.inc({ listener: name, result, version: 'none' }, 0);
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
      m.connections_total.inc({ listener, tls });
      activeEntry(listener, tls).count += 1;
    },
    connectionRefused(listener, reason) {
      refusedSeries(listener)(allowed(reason, CONNECTION_REFUSALS)).inc();
    },
    sessionClosed(listener, reason, durationSeconds) {
      connectionEnded(listener);
      const series = sessionSeries(listener);
      series.closed(knownCloseReasons.has(reason) ? reason : 'other').inc();
      series.duration.observe(durationSeconds);
    },
    tlsHandshake(listener, result, version, durationSeconds) {
      const res = allowed(result, TLS_HANDSHAKE_RESULTS);
      const ver = result === 'success' ? allowed(version, TLS_VERSIONS) : 'none';
      m.tls_handshakes_total.inc({ listener, result: res, version: ver });
      m.tls_handshake_duration_seconds.observe({ listener }, durationSeconds);
      // A failed handshake on an implicit-TLS port ends the connection before any session exists
      // (no sessionClosed follows); a failed STLS handshake closes its session, which reports it.
      if (result !== 'success' && listenerMode.get(listener) === 'implicit') connectionEnded(listener);
    },
    stlsUpgrade(listener, result, discardedLines) {
      m.stls_upgrades_total.inc({ listener, result: result === 'success' ? 'success' : 'failure' });
      if (discardedLines > 0) m.stls_discarded_lines_total.inc({ listener }, discardedLines);
    },
    loginAttempt(clientMechanism, backendMechanism, result, durationSeconds) {
      const res = allowed(result, LOGIN_RESULTS);
      m.login_attempts_total.inc({
        client_mechanism: allowed(clientMechanism, CLIENT_MECHANISMS),
        backend_mechanism: backendMechanism === undefined ? 'none' : allowed(backendMechanism, BACKEND_MECHANISMS),
        result: res,
      });
      m.login_duration_seconds.observe({ result: res }, durationSeconds);
    },
    rateLimitRejection(limiter) {
      m.ratelimit_rejections_total.inc({ limiter: allowed(limiter, LIMITER_NAMES_ALL) });
    },
    rateLimitStoreUp(up) {
      // A lost connection marks the store down without a failed call: the outage is what counts.
      if (!up && storeState !== false) m.ratelimit_store_outages_total.inc();
      storeState = up;
    },
    rateLimitStoreError() {
      m.ratelimit_store_errors_total.inc();
    },
    backendConnected(durationSeconds) {
      m.backend_connect_duration_seconds.observe(durationSeconds);
    },
    backendError(code) {
      m.backend_errors_total.inc({ reason: allowed(code, BACKEND_ERROR_CODES) });
    },
    commandRelayed(verb, durationSeconds) {
      // The session hands over verbs upper-cased already; anything else takes the long way once more.
      const series = verbSeries(knownVerbs.has(verb) ? verb : allowed(verb.toUpperCase(), RELAYED_VERBS));
      series.count.inc();
      series.duration.observe(durationSeconds);
    },
    bytesRelayed(direction, count) {
      if (count > 0) bytesSeries(knownDirections.has(direction) ? direction : 'other').inc(count);
    },
    configReload(success) {
      m.config_reloads_total.inc({ result: success ? 'success' : 'failure' });
      m.config_last_reload_successful.set(success ? 1 : 0);
      if (success) m.config_last_reload_success_timestamp_seconds.set(Math.floor(Date.now() / 1000));
    },

    setCertificates(list) {
      certificates = [...list];
    },
    backendProbe(backend, up, durationSeconds) {
      // Only configured names become labels, so there are at most 2 series a backend. Probes run for
      // configured backends only (never for an address auth_http names under
      // unlisted_backend_template); a name not configured now is a late result from a prober a
      // reload stopped, and is not counted.
      if (!backends.has(backend)) return;
      probes.set(backend, { up, durationSeconds });
      m.backend_probes_total.inc({ backend, result: up ? 'success' : 'failure' });
    },
    routeLookup(source, result) {
      m.route_lookups_total.inc({ source: allowed(source, ROUTE_SOURCE_NAMES), result: allowed(result, ROUTE_LOOKUP_RESULTS) });
    },
    setBackends(names) {
      const before = backends;
      backends = new Set(names);
      for (const name of probes.keys()) if (!backends.has(name)) probes.delete(name);
      // A renamed backend's counters go with it, or a reload after each rename would add series forever.
      for (const name of before) {
        if (!backends.has(name)) for (const result of ['success', 'failure']) m.backend_probes_total.remove({ backend: name, result });
      }
      for (const name of backends) if (!before.has(name)) zeroProbes(name);
    },
    storeUp: () => storeState,

  };
}
