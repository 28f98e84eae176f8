/**
 * The schema's output mapped onto the runtime Config every other module reads, in two steps:
 * `settle` fills the defaults the schema cannot know (they depend on the environment, or on
 * another key), so that the result is complete; `toRuntimeConfig` then only renames and regroups.
 * The settled values are also what --check-config prints (effective-config.ts).
 */
import { resolve } from 'node:path';
import { DEFAULT_REALM_SEPARATORS, type ParsedConfig } from './schema.js';
import { DEFAULT_BACKEND_NAME } from './routing-schema.js';
import type { BackendConfig, Config, LimiterPolicy, ListenerConfig, ListenerKind, RedisTarget, RouteMatch, RoutingConfig } from './types.js';
import { formatHostPort } from './values.js';

/** systemd sets STATE_DIRECTORY to a colon-separated list when several are configured; ours is the first. */
export function defaultStateDir(env: NodeJS.ProcessEnv): string {
  const fromSystemd = env['STATE_DIRECTORY']?.split(':')[0];
  return fromSystemd !== undefined && fromSystemd !== '' ? fromSystemd : './.state';
}

function listener(kind: ListenerKind, entry: ParsedConfig['listen_tls'][number]): ListenerConfig {
  const { address } = entry;
  return {
    kind,
    host: address.host,
    port: address.port,
    name: `${kind}:${formatHostPort(address)}`,
    ...(entry.proxy_protocol ? { proxyProtocol: { trusted: entry.proxy_protocol_trusted } } : {}),
  };
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
export function toRuntimeConfig(settings: EffectiveSettings): Config {
  const t = settings.timeouts;
  const r = settings.rate_limit;
  return {
    listeners: [
      ...settings.listen_tls.map((entry) => listener('tls', entry)),
      ...settings.listen_stls.map((entry) => listener('stls', entry)),
    ],
    backends: runtimeBackends(settings),
    routing: runtimeRouting(settings),
    tls: {
      certFile: settings.cert,
      keyFile: settings.key,
      pfxFile: settings.tls.pfx,
      pfxPassphraseFile: settings.tls.pfx_passphrase_file,
      certificates: settings.tls.certificates.map((entry) => ({ names: entry.names, certFile: entry.cert, keyFile: entry.key })),
      serverNames: settings.tls.server_names,
      watchFiles: settings.tls.watch_files,
      minVersion: settings.tls.min_version,
      allowLegacyProtocols: settings.tls.allow_legacy_protocols,
      ciphers: settings.tls.ciphers,
      groups: settings.tls.groups,
      ticketKeysFile: settings.tls.ticket_keys_file,
    },
    stateDir: settings.state_dir,
    greeting: settings.greeting,
    authFailureDelayMs: settings.auth_failure_delay,
    timeouts: {
      preAuthMs: t.pre_auth,
      idleMs: t.idle,
      tlsHandshakeMs: t.tls_handshake,
      proxyProtocolMs: t.proxy_protocol,
      backendConnectMs: t.backend_connect,
      backendStepMs: t.backend_step,
      backendAuthMs: t.backend_auth,
      backendIdleMs: t.backend_idle,
      clientWriteStallMs: t.client_write_stall,
      shutdownMs: t.shutdown,
    },
    limits: {
      maxInvalidCommands: settings.limits.max_invalid_commands,
      maxCommandsBeforeLogin: settings.limits.max_commands_before_login,
      maxSessionsPerIp: settings.limits.max_sessions_per_ip,
      maxNewConnectionsPerIp: settings.limits.max_new_connections_per_ip,
      maxNewConnectionsPerIpPerMinute: settings.limits.max_new_connections_per_ip_per_minute,
      maxProtocolErrorsPerIpPerHour: settings.limits.max_protocol_errors_per_ip_per_hour,
      maxHandshakesPerIp: settings.limits.max_handshakes_per_ip,
      maxSessions: settings.limits.max_sessions,
      maxHandshakes: settings.limits.max_handshakes,
      maxBackendProcesses: settings.limits.max_backend_processes,
      maxBackendLoginsPerIp: settings.limits.max_backend_logins_per_ip,
    },
    logLevel: settings.log_level,
    metrics: {
      listen: settings.metrics_listen === 'off' ? undefined : settings.metrics_listen,
      backendProbeIntervalMs: settings.backend_probe_interval,
    },
    redis: {
      target: redisTarget(settings.redis),
      username: settings.redis.username,
      passwordFile: settings.redis.password_file,
      tls: settings.redis.tls,
      commandTimeoutMs: settings.redis.command_timeout,
      connectTimeoutMs: settings.redis.connect_timeout,
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

/** `backend:` + backend_* as the one backend named `default`, or every entry of `backends:`. */
function runtimeBackends(settings: EffectiveSettings): BackendConfig[] {
  if (settings.backends === undefined) {
    // The schema refuses a config with neither form.
    const address = settings.backend ?? { kind: 'tcp', host: '', port: 0 };
    return [
      {
        name: DEFAULT_BACKEND_NAME,
        named: false,
        address,
        auth: settings.backend_auth,
        tls: settings.backend_tls,
        caFile: settings.backend_ca,
        tlsInsecure: settings.backend_tls_insecure,
        tlsServerName: settings.backend_tls_servername,
        clientCertFile: settings.backend_tls_cert,
        clientKeyFile: settings.backend_tls_key,
        allowPlaintextAuth: settings.allow_plaintext_backend_auth,
        trustLoopback: settings.backend_trust_loopback,
        sourceAddress: settings.backend_source_address,
        proxyProtocol: settings.backend_proxy_protocol,
        xclient: settings.backend_xclient,
        probeIntervalMs: settings.backend_probe_interval,
        drain: false,
        rewrite: undefined,
      },
    ];
  }
  return Object.entries(settings.backends).map(([name, entry]) => ({
    name,
    named: true,
    address: entry.address,
    auth: entry.auth,
    tls: entry.tls,
    caFile: entry.ca,
    tlsInsecure: entry.tls_insecure,
    tlsServerName: entry.tls_servername,
    clientCertFile: entry.tls_cert,
    clientKeyFile: entry.tls_key,
    allowPlaintextAuth: entry.allow_plaintext_auth,
    trustLoopback: entry.trust_loopback,
    sourceAddress: entry.source_address,
    proxyProtocol: entry.proxy_protocol,
    xclient: entry.xclient,
    probeIntervalMs: entry.probe_interval ?? settings.backend_probe_interval,
    drain: entry.drain,
    rewrite: entry.rewrite,
  }));
}

function runtimeRouting(settings: EffectiveSettings): RoutingConfig {
  const routing = settings.routing;
  const authHttp = routing.auth_http;
  return {
    routes: routing.routes.map((route) => ({ match: routeMatch(route), backend: route.backend, rewrite: route.rewrite })),
    mapFile: routing.map_file,
    redisKey: routing.redis_key,
    authHttp:
      authHttp === undefined
        ? undefined
        : { url: authHttp.url, timeoutMs: authHttp.timeout, sendPassword: authHttp.send_password, unlistedBackendTemplate: authHttp.unlisted_backend_template },
    // The one-backend form keeps meaning "every user goes there".
    defaultBackend: routing.default ?? (settings.backends === undefined ? DEFAULT_BACKEND_NAME : undefined),
  };
}

function routeMatch(route: { readonly user?: string | undefined; readonly regex?: string | undefined }): RouteMatch {
  if (route.regex !== undefined) return { kind: 'regex', source: route.regex };
  const user = route.user ?? '';
  return user.startsWith('*@') ? { kind: 'domain', domain: user.slice(2) } : { kind: 'user', user };
}
