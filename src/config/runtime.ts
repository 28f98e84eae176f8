/**
 * The schema's output mapped onto the runtime Config every other module reads, in two steps:
 * `settle` fills the defaults the schema cannot know (they depend on the environment, or on
 * another key), so that the result is complete; `toRuntimeConfig` then only renames and regroups.
 * The settled values are also what --check-config prints (effective-config.ts).
 */
import { resolve } from 'node:path';
import { DEFAULT_REALM_SEPARATORS, type ParsedConfig } from './schema.js';
import type { Config, LimiterPolicy, ListenerConfig, ListenerKind, RedisTarget } from './types.js';
import { formatHostPort } from './values.js';

/** systemd sets STATE_DIRECTORY to a colon-separated list when several are configured; ours is the first. */
export function defaultStateDir(env: NodeJS.ProcessEnv): string {
  const fromSystemd = env['STATE_DIRECTORY']?.split(':')[0];
  return fromSystemd !== undefined && fromSystemd !== '' ? fromSystemd : './.state';
}

function listener(kind: ListenerKind, address: { host: string; port: number }): ListenerConfig {
  return { kind, host: address.host, port: address.port, name: `${kind}:${formatHostPort(address)}` };
}

/** The schema's output with every default applied: the one source of the runtime Config and of --check-config. */
export type EffectiveSettings = ParsedConfig & { readonly state_dir: string };

/**
 * The defaults the schema cannot declare: state_dir comes from systemd's STATE_DIRECTORY, and the
 * realm separators apply only when no pattern is given (the schema refuses both together).
 */
export function settle(parsed: ParsedConfig, env: NodeJS.ProcessEnv): EffectiveSettings {
  const canonical = parsed.rate_limit.username_canonical;
  return {
    ...parsed,
    state_dir: resolve(parsed.state_dir ?? defaultStateDir(env)),
    rate_limit: {
      ...parsed.rate_limit,
      username_canonical:
        canonical.pattern === undefined ? { ...canonical, realm_separators: canonical.realm_separators ?? DEFAULT_REALM_SEPARATORS } : canonical,
    },
  };
}

/** Settled schema output → runtime Config: names and grouping only, every value is already final. */
export function toRuntimeConfig(parsed: EffectiveSettings): Config {
  const t = parsed.timeouts;
  const r = parsed.rate_limit;
  return {
    listeners: [
      ...parsed.listen_tls.map((address) => listener('tls', address)),
      ...parsed.listen_stls.map((address) => listener('stls', address)),
    ],
    backend: {
      host: parsed.backend.host,
      port: parsed.backend.port,
      auth: parsed.backend_auth,
      tls: parsed.backend_tls,
      caFile: parsed.backend_ca,
      tlsInsecure: parsed.backend_tls_insecure,
      tlsServerName: parsed.backend_tls_servername,
      clientCertFile: parsed.backend_tls_cert,
      clientKeyFile: parsed.backend_tls_key,
      allowPlaintextAuth: parsed.allow_plaintext_backend_auth,
      trustLoopback: parsed.backend_trust_loopback,
      sourceAddress: parsed.backend_source_address,
    },
    tls: {
      certFile: parsed.cert,
      keyFile: parsed.key,
      pfxFile: parsed.tls.pfx,
      pfxPassphraseFile: parsed.tls.pfx_passphrase_file,
      certificates: parsed.tls.certificates.map((entry) => ({ names: entry.names, certFile: entry.cert, keyFile: entry.key })),
      serverNames: parsed.tls.server_names,
      watchFiles: parsed.tls.watch_files,
      minVersion: parsed.tls.min_version,
      allowLegacyProtocols: parsed.tls.allow_legacy_protocols,
      ciphers: parsed.tls.ciphers,
      groups: parsed.tls.groups,
      ticketKeysFile: parsed.tls.ticket_keys_file,
    },
    stateDir: parsed.state_dir,
    greeting: parsed.greeting,
    authFailureDelayMs: parsed.auth_failure_delay,
    timeouts: {
      preAuthMs: t.pre_auth,
      idleMs: t.idle,
      tlsHandshakeMs: t.tls_handshake,
      backendConnectMs: t.backend_connect,
      backendStepMs: t.backend_step,
      backendAuthMs: t.backend_auth,
      backendIdleMs: t.backend_idle,
      clientWriteStallMs: t.client_write_stall,
      shutdownMs: t.shutdown,
    },
    limits: {
      maxInvalidCommands: parsed.limits.max_invalid_commands,
      maxSessionsPerIp: parsed.limits.max_sessions_per_ip,
      maxNewConnectionsPerIp: parsed.limits.max_new_connections_per_ip,
      maxHandshakesPerIp: parsed.limits.max_handshakes_per_ip,
      maxSessions: parsed.limits.max_sessions,
      maxHandshakes: parsed.limits.max_handshakes,
    },
    logLevel: parsed.log_level,
    metrics: {
      listen: parsed.metrics_listen === 'off' ? undefined : parsed.metrics_listen,
      backendProbeIntervalMs: parsed.backend_probe_interval,
    },
    redis: {
      target: redisTarget(parsed.redis),
      username: parsed.redis.username,
      passwordFile: parsed.redis.password_file,
      tls: parsed.redis.tls,
      commandTimeoutMs: parsed.redis.command_timeout,
      connectTimeoutMs: parsed.redis.connect_timeout,
    },
    rateLimit: {
      keyPrefix: r.key_prefix,
      usernameCanonical: {
        lowerCase: r.username_canonical.lower_case,
        // settle leaves realm_separators unset only beside a pattern, which then decides alone.
        realmSeparators: r.username_canonical.realm_separators ?? '',
        pattern: r.username_canonical.pattern,
      },
      ipv6PrefixLength: r.ipv6_prefix,
      userIp: limiterPolicy(r.user_ip),
      ip: limiterPolicy(r.ip),
      user: limiterPolicy(r.user),
      trustedPairMs: r.trusted_for,
      hmacKeyFile: r.hmac_key_file,
      allow: r.allow,
      deny: r.deny,
      onStoreFailure: r.on_store_failure,
    },
  };
}

function redisTarget(redis: ParsedConfig['redis']): RedisTarget {
  if (redis.url !== undefined) return { kind: 'url', url: redis.url };
  if (redis.sentinels !== undefined) return { kind: 'sentinel', sentinels: redis.sentinels, name: redis.name ?? '' };
  if (redis.cluster !== undefined) return { kind: 'cluster', nodes: redis.cluster };
  return { kind: 'none' };
}

type ParsedLimiter = ParsedConfig['rate_limit']['user_ip'];
const limiterPolicy = (limiter: ParsedLimiter): LimiterPolicy => ({
  maxFailures: limiter.max_failures,
  windowMs: limiter.window,
  blockMs: limiter.block,
});
