/**
 * The effective config as --check-config prints it: in config-file shape, secrets masked.
 */
import { CONFIG_KEYS, type ConfigKey } from './schema-keys.js';
import type { RawConfig } from './schema.js';
import { getIn, setIn } from './object-paths.js';
import type { Config, HostPort, LimiterPolicy, ListenerKind, UsernameCanonical } from './types.js';
import { formatDuration, formatHostPort } from './values.js';

const rawUsernameCanonical = (rule: UsernameCanonical) => ({
  lower_case: rule.lowerCase,
  ...(rule.pattern === undefined ? { realm_separators: rule.realmSeparators } : { pattern: rule.pattern }),
});
const rawLimiter = (policy: LimiterPolicy) => ({
  max_failures: policy.maxFailures,
  window: formatDuration(policy.windowMs),
  block: formatDuration(policy.blockMs),
});

function rawRedis(config: Config): NonNullable<RawConfig['redis']> {
  const { redis } = config;
  const hostPorts = (list: readonly HostPort[]) => list.map(formatHostPort);
  const target = redis.target;
  return {
    tls: redis.tls,
    command_timeout: formatDuration(redis.commandTimeoutMs),
    connect_timeout: formatDuration(redis.connectTimeoutMs),
    ...(target.kind === 'url' ? { url: target.url } : {}),
    ...(target.kind === 'sentinel' ? { sentinels: hostPorts(target.sentinels), name: target.name } : {}),
    ...(target.kind === 'cluster' ? { cluster: hostPorts(target.nodes) } : {}),
    ...(redis.username === undefined ? {} : { username: redis.username }),
    ...(redis.passwordFile === undefined ? {} : { password_file: redis.passwordFile }),
  };
}

/**
 * A Redis URL with its password (if any) masked, for --check-config and logs. The userinfo is cut
 * where the URL parser ioredis uses (WHATWG) cuts it: at the LAST "@" before the path, so a
 * password containing "@" is masked whole. Userinfo without a colon is masked whole too: by the
 * grammar it is a username, but it is where a password lands when the leading ":" is forgotten.
 */
export function redactRedisUrl(url: string): string {
  const scheme = /^rediss?:\/\//.exec(url)?.[0];
  if (scheme === undefined) return url;
  const authorityEnd = url.slice(scheme.length).search(/[/?#]/);
  const authority = authorityEnd === -1 ? url.slice(scheme.length) : url.slice(scheme.length, scheme.length + authorityEnd);
  const at = authority.lastIndexOf('@');
  if (at === -1) return url;
  const userinfo = authority.slice(0, at);
  const colon = userinfo.indexOf(':');
  const shown = colon === -1 ? REDACTED : `${userinfo.slice(0, colon)}:${REDACTED}`;
  return `${scheme}${shown}${url.slice(scheme.length + at)}`;
}

function rawTls(tls: Config['tls']): NonNullable<RawConfig['tls']> {
  const raw: NonNullable<RawConfig['tls']> = {
    certificates: tls.certificates.map((entry) => ({ names: [...entry.names], cert: entry.certFile, key: entry.keyFile })),
    server_names: [...tls.serverNames],
    watch_files: tls.watchFiles,
    min_version: tls.minVersion,
    allow_legacy_protocols: tls.allowLegacyProtocols,
    ciphers: tls.ciphers,
    groups: tls.groups,
  };
  if (tls.ticketKeysFile !== undefined) raw.ticket_keys_file = tls.ticketKeysFile;
  if (tls.pfxFile !== undefined) raw.pfx = tls.pfxFile;
  if (tls.pfxPassphraseFile !== undefined) raw.pfx_passphrase_file = tls.pfxPassphraseFile;
  return raw;
}

/** The inverse of toRuntimeConfig: a config file that would load to exactly this Config. */
function toRawConfig(config: Config): RawConfig {
  const addresses = (kind: ListenerKind) => config.listeners.filter((l) => l.kind === kind).map(formatHostPort);
  const { backend, timeouts: t } = config;
  const raw: RawConfig = {
    listen_tls: addresses('tls'),
    listen_stls: addresses('stls'),
    backend: formatHostPort(backend),
    backend_auth: backend.auth,
    backend_tls: backend.tls,
    backend_tls_insecure: backend.tlsInsecure,
    allow_plaintext_backend_auth: backend.allowPlaintextAuth,
    backend_trust_loopback: backend.trustLoopback,
    state_dir: config.stateDir,
    greeting: config.greeting,
    auth_failure_delay: formatDuration(config.authFailureDelayMs),
    log_level: config.logLevel,
    timeouts: {
      pre_auth: formatDuration(t.preAuthMs),
      idle: formatDuration(t.idleMs),
      tls_handshake: formatDuration(t.tlsHandshakeMs),
      backend_connect: formatDuration(t.backendConnectMs),
      backend_step: formatDuration(t.backendStepMs),
      backend_auth: formatDuration(t.backendAuthMs),
      backend_idle: formatDuration(t.backendIdleMs),
      client_write_stall: formatDuration(t.clientWriteStallMs),
      shutdown: formatDuration(t.shutdownMs),
    },
    limits: {
      max_invalid_commands: config.limits.maxInvalidCommands,
      max_sessions_per_ip: config.limits.maxSessionsPerIp,
      max_new_connections_per_ip: config.limits.maxNewConnectionsPerIp,
      max_handshakes_per_ip: config.limits.maxHandshakesPerIp,
      max_sessions: config.limits.maxSessions,
      max_handshakes: config.limits.maxHandshakes,
    },
    tls: rawTls(config.tls),
    redis: rawRedis(config),
    rate_limit: {
      key_prefix: config.rateLimit.keyPrefix,
      username_canonical: rawUsernameCanonical(config.rateLimit.usernameCanonical),
      ipv6_prefix: config.rateLimit.ipv6PrefixLength,
      user_ip: rawLimiter(config.rateLimit.userIp),
      ip: rawLimiter(config.rateLimit.ip),
      user: rawLimiter(config.rateLimit.user),
      trusted_for: formatDuration(config.rateLimit.trustedPairMs),
      allow: [...config.rateLimit.allow],
      deny: [...config.rateLimit.deny],
      on_store_failure: config.rateLimit.onStoreFailure,
      ...(config.rateLimit.hmacKeyFile === undefined ? {} : { hmac_key_file: config.rateLimit.hmacKeyFile }),
    },
    metrics_listen: config.metrics.listen === undefined ? 'off' : formatHostPort(config.metrics.listen),
    backend_probe_interval: formatDuration(config.metrics.backendProbeIntervalMs),
  };
  // exactOptionalPropertyTypes: absent optional keys are left out, not written as undefined.
  if (backend.caFile !== undefined) raw.backend_ca = backend.caFile;
  if (backend.tlsServerName !== undefined) raw.backend_tls_servername = backend.tlsServerName;
  if (backend.clientCertFile !== undefined) raw.backend_tls_cert = backend.clientCertFile;
  if (backend.clientKeyFile !== undefined) raw.backend_tls_key = backend.clientKeyFile;
  if (backend.sourceAddress !== undefined) raw.backend_source_address = backend.sourceAddress;
  if (config.tls.certFile !== undefined) raw.cert = config.tls.certFile;
  if (config.tls.keyFile !== undefined) raw.key = config.tls.keyFile;
  return raw;
}

export const REDACTED = '********';

/** Key names that hold secrets even if nobody remembered to mark them in the schema (second belt). */
const SECRET_NAME = /pass(word|phrase)?|secret|token|credential|api_key|private/i;

/**
 * The effective config in config-file shape for --check-config, with secrets masked: keys marked
 * `.meta({ secret: true })` in the schema, and any key whose name looks like a secret.
 */
export function redactedConfig(config: Config): RawConfig {
  const raw = maskSecrets(toRawConfig(config), CONFIG_KEYS);
  if (raw.redis?.url !== undefined) raw.redis.url = redactRedisUrl(raw.redis.url);
  return raw;
}

/** Replaces the values of secret keys in a config-file-shaped object (in place) and returns it. */
export function maskSecrets<T extends object>(raw: T, keys: readonly Pick<ConfigKey, 'path' | 'secret'>[]): T {
  for (const key of keys) {
    const isSecret = key.secret || SECRET_NAME.test(key.path.at(-1) ?? '');
    if (isSecret && getIn(raw, key.path) !== undefined) setIn(raw as Record<string, unknown>, key.path, REDACTED);
  }
  return raw;
}
