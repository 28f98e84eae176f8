/**
 * What popwarden reports about itself, as named domain events. Protocol code calls these and
 * never touches a metrics library (STYLE lesson 13); the Prometheus implementation lives in
 * observability/prometheus.ts and turns each call into counters, gauges and histograms with
 * bounded labels. No username, client address or session id is ever an argument here.
 */

import type { LimiterName } from '../auth/limiter-names.js';

export type { LimiterName };

/** Listener names come from the configuration, so they are a bounded label. */
export type ListenerName = string;

export const TLS_HANDSHAKE_RESULTS = ['success', 'failure', 'timeout', 'evicted'] as const;
export type TlsHandshakeResult = (typeof TLS_HANDSHAKE_RESULTS)[number];
export const LOGIN_RESULTS = ['success', 'failure', 'blocked', 'backend_error'] as const;
export type LoginResult = (typeof LOGIN_RESULTS)[number];
export const RELAY_DIRECTIONS = ['to_client', 'to_backend'] as const;
export type RelayDirection = (typeof RELAY_DIRECTIONS)[number];
/**
 * Why a connection was turned away at accept: the deny list, a per-address bound (sessions, new
 * connections per second and per minute, sessions ended by a protocol error per hour, TLS
 * handshakes in progress), a bound of the whole process, named
 * after its key (limits.max_sessions, limits.max_handshakes), or, on a listener with
 * proxy_protocol, its PROXY header: sent from an untrusted address, missing, malformed, not whole
 * within timeouts.proxy_protocol, cut short by the peer closing, or not awaited because
 * limits.max_handshakes connections are waiting for theirs already.
 */
export const CONNECTION_REFUSALS = [
  'denied',
  'too_many_sessions',
  'too_many_connections',
  'too_many_connections_per_minute',
  'too_many_protocol_errors',
  'too_many_handshakes',
  'max_sessions',
  'max_handshakes',
  'proxy_untrusted',
  'proxy_missing',
  'proxy_malformed',
  'proxy_timeout',
  'proxy_closed',
  'proxy_pending',
] as const;
export type ConnectionRefusal = (typeof CONNECTION_REFUSALS)[number];

/** Where a login's backend was found (backend/routing/source.ts names the same sources). */
export const ROUTE_SOURCE_NAMES = ['static', 'map_file', 'redis', 'auth_http', 'default'] as const;
export type RouteSourceLabel = (typeof ROUTE_SOURCE_NAMES)[number];
/** hit: it named a backend; miss: it knows no route; refused: auth_http refused the user; error: it failed or named no configured backend. */
export const ROUTE_LOOKUP_RESULTS = ['hit', 'miss', 'refused', 'error'] as const;
export type RouteLookupResult = (typeof ROUTE_LOOKUP_RESULTS)[number];

export interface Metrics {
  /** A client connected (before any TLS work). */
  connectionOpened(listener: ListenerName, tls: 'implicit' | 'starttls'): void;
  /** A client was turned away at connect (deny list, per-IP bounds). */
  connectionRefused(listener: ListenerName, reason: ConnectionRefusal): void;
  /** A session ended; `reason` is one of the bounded CloseReason values. */
  sessionClosed(listener: ListenerName, reason: string, durationSeconds: number): void;
  /** A TLS handshake finished, on the implicit port or after STLS. */
  tlsHandshake(listener: ListenerName, result: TlsHandshakeResult, version: string | undefined, durationSeconds: number): void;
  /** A client used STLS; `discardedLines` counts commands it pipelined after STLS (thrown away). */
  stlsUpgrade(listener: ListenerName, result: 'success' | 'failure', discardedLines: number): void;
  /** One complete login attempt. `backendMechanism` is undefined when none was used. */
  loginAttempt(clientMechanism: string, backendMechanism: string | undefined, result: LoginResult, durationSeconds: number): void;
  /** A login (or a connection) was refused by a limiter. */
  rateLimitRejection(limiter: LimiterName): void;
  /** Whether the shared rate-limit store (Redis) answers; false means the fallback is in use. */
  rateLimitStoreUp(up: boolean): void;
  /** One failed call to the rate-limit store. */
  rateLimitStoreError(): void;
  /** A TCP connection to the backend succeeded after this long. */
  backendConnected(durationSeconds: number): void;
  /** The result of one health probe (connect, greeting, and STLS where offered) of the backend so named. */
  backendProbe(backend: string, up: boolean, durationSeconds: number): void;
  /** One route source asked for a login's backend, and what it answered. */
  routeLookup(source: RouteSourceLabel, result: RouteLookupResult): void;
  /** A backend failure, by stable error code (E_BACKEND_CONNECT, E_BACKEND_TIMEOUT, ...). */
  backendError(code: string): void;
  /** A relayed command completed (its whole reply passed on). */
  commandRelayed(verb: string, durationSeconds: number): void;
  /** Bytes relayed after login. */
  bytesRelayed(direction: RelayDirection, bytes: number): void;
  /** The configuration was reloaded (SIGHUP); false when the new one was rejected and the old one kept. */
  configReload(success: boolean): void;
}

/** Metrics switched off: every event is dropped. */
export const NO_METRICS: Metrics = {
  connectionOpened: () => undefined,
  connectionRefused: () => undefined,
  sessionClosed: () => undefined,
  tlsHandshake: () => undefined,
  stlsUpgrade: () => undefined,
  loginAttempt: () => undefined,
  rateLimitRejection: () => undefined,
  rateLimitStoreUp: () => undefined,
  rateLimitStoreError: () => undefined,
  backendConnected: () => undefined,
  backendProbe: () => undefined,
  routeLookup: () => undefined,
  backendError: () => undefined,
  commandRelayed: () => undefined,
  bytesRelayed: () => undefined,
  configReload: () => undefined,
};
