/**
 * What a reload (SIGHUP, or a changed certificate file with tls.watch_files) may change while
 * popwarden runs. Everything a new session reads when it starts takes effect for sessions that
 * start afterwards: the TLS certificates, policy and ticket keys, the backend and its TLS
 * settings, greeting, auth_failure_delay, timeouts (except the implicit-TLS handshake timeout
 * and timeouts.proxy_protocol, fixed when the listener was bound, and timeouts.shutdown, handed
 * to the signal handler), limits.max_invalid_commands, limits.max_commands_before_login,
 * limits.max_backend_processes and limits.max_backend_logins_per_ip, the
 * backends (added, removed, changed, drained), their probe intervals and the routing (routes, map
 * file, redis_key, auth_http); the health probes follow the backends. Settings bound to something
 * built once at startup keep their old value and are logged as needing a restart: the listener
 * addresses, the metrics endpoint, state_dir, log_level, Redis and the
 * rate limits, and the connection and handshake bounds, per IP and for the process (enforced at accept).
 */
import type { Config } from './types.js';

/** The keys a reload cannot apply, as the user writes them, with how to read them from a Config. */
const RESTART_ONLY: readonly (readonly [string, (config: Config) => unknown])[] = [
  ['listen_tls/listen_stls', (c) => c.listeners],
  ['metrics_listen', (c) => c.metrics.listen],
  ['state_dir', (c) => c.stateDir],
  ['log_level', (c) => c.logLevel],
  ['redis', (c) => c.redis],
  ['rate_limit', (c) => c.rateLimit],
  ['limits.max_sessions_per_ip', (c) => c.limits.maxSessionsPerIp],
  ['limits.max_new_connections_per_ip', (c) => c.limits.maxNewConnectionsPerIp],
  ['limits.max_new_connections_per_ip_per_minute', (c) => c.limits.maxNewConnectionsPerIpPerMinute],
  ['limits.max_protocol_errors_per_ip_per_hour', (c) => c.limits.maxProtocolErrorsPerIpPerHour],
  ['limits.max_handshakes_per_ip', (c) => c.limits.maxHandshakesPerIp],
  ['limits.max_sessions', (c) => c.limits.maxSessions],
  ['limits.max_handshakes', (c) => c.limits.maxHandshakes],
  ['tls.watch_files', (c) => c.tls.watchFiles],
  ['timeouts.tls_handshake (implicit-TLS port)', (c) => c.timeouts.tlsHandshakeMs],
  ['timeouts.shutdown', (c) => c.timeouts.shutdownMs],
  ['timeouts.proxy_protocol', (c) => c.timeouts.proxyProtocolMs],
];

export interface ReloadPlan {
  /** The config to run with: the new values, except the restart-only ones kept from `running`. */
  readonly config: Config;
  /** Restart-only keys whose value changed (left as they were). */
  readonly needsRestart: readonly string[];
}

/** Merges a freshly loaded config into the running one, keeping what only a restart can change. */
export function planReload(running: Config, next: Config): ReloadPlan {
  const needsRestart = RESTART_ONLY.filter(([, read]) => JSON.stringify(read(running)) !== JSON.stringify(read(next))).map(
    ([name]) => name,
  );
  const config: Config = {
    ...next,
    listeners: running.listeners,
    metrics: running.metrics,
    stateDir: running.stateDir,
    logLevel: running.logLevel,
    redis: running.redis,
    rateLimit: running.rateLimit,
    limits: {
      ...next.limits,
      maxSessionsPerIp: running.limits.maxSessionsPerIp,
      maxNewConnectionsPerIp: running.limits.maxNewConnectionsPerIp,
      maxNewConnectionsPerIpPerMinute: running.limits.maxNewConnectionsPerIpPerMinute,
      maxProtocolErrorsPerIpPerHour: running.limits.maxProtocolErrorsPerIpPerHour,
      maxHandshakesPerIp: running.limits.maxHandshakesPerIp,
      maxSessions: running.limits.maxSessions,
      maxHandshakes: running.limits.maxHandshakes,
    },
    tls: { ...next.tls, watchFiles: running.tls.watchFiles },
    // The STLS handshake deadline follows the new value; the implicit port's was fixed at bind.
    // The drain time on SIGTERM was handed to the signal handler at startup.
    // So is the PROXY header's, handed to the listeners when they were bound.
    timeouts: { ...next.timeouts, shutdownMs: running.timeouts.shutdownMs, proxyProtocolMs: running.timeouts.proxyProtocolMs },
  };
  return { config: Object.freeze(config), needsRestart };
}
