/**
 * The effective config as --check-config prints it: the settled schema output written back in
 * config-file shape, derived from the schema keys (CONFIG_KEYS) and their declared value syntax
 * (durations, HOST:PORT), with secrets masked by the rule declared beside them (holdsSecret).
 * Loading the printed file gives the same Config, secrets aside.
 */
import { getIn, setIn } from './object-paths.js';
import type { EffectiveSettings } from './runtime.js';
import { ONE_BACKEND_KEYS } from './routing-schema.js';
import type { RawConfig } from './schema.js';
import { CONFIG_KEYS, holdsSecret, type ConfigKey } from './schema-keys.js';
import type { BackendAddress, HostPort } from './types.js';
import { formatBackendAddress, formatDuration, formatHostPort } from './values.js';

export const REDACTED = '********';

/** One parsed value back in the syntax the user writes. */
function written(key: ConfigKey, value: unknown): unknown {
  const write = (item: unknown): unknown => {
    switch (key.syntax) {
      case 'duration':
        return formatDuration(item as number);
      case 'host-port':
        return formatHostPort(item as HostPort);
      case 'host-port-or-off':
        return item === 'off' ? 'off' : formatHostPort(item as HostPort);
      case 'named-backends':
        return writtenBackends(item as NamedBackends);
      case 'backend-address':
        return writtenBackend(item as BackendAddress);
      case 'listener':
        return writtenListener(item as EffectiveSettings['listen_tls'][number]);
      case undefined:
        return item;
    }
  };
  return key.kind === 'list' ? (value as readonly unknown[]).map(write) : write(value);
}

type NamedBackends = Readonly<Record<string, { readonly address: BackendAddress; readonly probe_interval?: number | undefined }>>;

/** `backends:` as written: each address as `backend:` writes it, each probe interval with its unit. */
function writtenBackends(backends: NamedBackends): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(backends).map(([name, entry]) => [
      name,
      {
        ...entry,
        address: writtenBackend(entry.address),
        ...(entry.probe_interval === undefined ? {} : { probe_interval: formatDuration(entry.probe_interval) }),
      },
    ]),
  );
}

/** A listener as it is usually written: HOST:PORT, and the object form only behind a load balancer. */
function writtenListener(entry: EffectiveSettings['listen_tls'][number]): unknown {
  const address = formatHostPort(entry.address);
  if (!entry.proxy_protocol) return address;
  return { address, proxy_protocol: true, proxy_protocol_trusted: entry.proxy_protocol_trusted };
}

/**
 * The one-line form where it says everything; the structured exec form when the arguments hold
 * spaces (or are empty), or there is an environment or a working directory.
 */
function writtenBackend(address: BackendAddress): unknown {
  if (address.kind !== 'exec') return formatBackendAddress(address);
  const oneLine = Object.keys(address.environment).length === 0 && address.cwd === undefined && address.args.every((arg) => /^\S+$/.test(arg));
  if (oneLine) return formatBackendAddress(address);
  const { command, args, environment, cwd } = address;
  return { exec: { command, args, environment, ...(cwd === undefined ? {} : { cwd }) } };
}

/**
 * The top-level order --check-config has always printed, kept so that the output of two versions
 * diffs by value, not by position; a key not listed (the optional ones, and any new key) follows
 * in schema order. Inside a section the schema order holds, with optional keys last.
 */
const TOP_LEVEL_ORDER = [
  'listen_tls', 'listen_stls', 'backend', 'backend_auth', 'backend_tls', 'backend_tls_insecure', 'allow_plaintext_backend_auth',
  'backend_trust_loopback', 'backend_proxy_protocol', 'backend_xclient', 'state_dir', 'greeting', 'auth_failure_delay', 'log_level', 'timeouts', 'limits', 'tls', 'redis',
  'rate_limit', 'metrics_listen', 'backend_probe_interval',
];

const OPTIONAL_KEYS = new Set(CONFIG_KEYS.filter((key) => key.optional).map((key) => key.name));

function inPrintOrder(node: Record<string, unknown>, path: readonly string[]): Record<string, unknown> {
  const rank = (name: string): number => {
    if (path.length > 0) return OPTIONAL_KEYS.has([...path, name].join('.')) ? 1 : 0;
    const index = TOP_LEVEL_ORDER.indexOf(name);
    return index === -1 ? TOP_LEVEL_ORDER.length : index;
  };
  const entries = Object.entries(node).sort(([a], [b]) => rank(a) - rank(b));
  return Object.fromEntries(
    entries.map(([name, value]) => {
      const section = typeof value === 'object' && value !== null && !Array.isArray(value);
      return [name, section ? inPrintOrder(value as Record<string, unknown>, [...path, name]) : value];
    }),
  );
}

/**
 * The effective config in config-file shape for --check-config, with secrets masked: keys marked
 * `.meta({ secret: true })` in the schema, keys whose name looks like a secret, and the password
 * inside a Redis URL.
 */
export function redactedConfig(settings: EffectiveSettings): RawConfig {
  const printed: Record<string, unknown> = {};
  // With named backends, the one-backend keys' defaults would read back as a conflict.
  const skipped = settings.backends === undefined ? [] : ONE_BACKEND_KEYS;
  for (const key of CONFIG_KEYS) {
    if (skipped.includes(key.name)) continue;
    const value = getIn(settings, key.path);
    if (value !== undefined) setIn(printed, key.path, written(key, value));
  }
  const raw = maskSecrets(inPrintOrder(printed, []), CONFIG_KEYS) as RawConfig;
  // The one value with a secret inside it: masked in part, so the output still says where Redis is.
  if (raw.redis?.url !== undefined) raw.redis.url = redactRedisUrl(raw.redis.url);
  return raw;
}

/** Replaces the values of secret keys in a config-file-shaped object (in place) and returns it. */
export function maskSecrets<T extends object>(raw: T, keys: readonly (Pick<ConfigKey, 'path' | 'secret'> & Partial<Pick<ConfigKey, 'kind'>>)[]): T {
  for (const key of keys) {
    if (holdsSecret(key) && getIn(raw, key.path) !== undefined) setIn(raw as Record<string, unknown>, key.path, REDACTED);
  }
  return raw;
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
