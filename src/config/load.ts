/**
 * Builds the runtime Config from the command line, POPWARDEN_* environment variables and an
 * optional YAML file (flag > env > file > default), validates it against the schema, and freezes
 * it. Every failure is a ConfigError whose message is one line naming where the bad value came
 * from (file:line, --flag or ENV_VAR) and what to do about it.
 */
import { accessSync, constants as fsConstants, readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { LineCounter, isMap, isNode, isScalar, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { CONFIG_KEYS, DEFAULT_REALM_SEPARATORS, RENAMED_KEYS, DEFAULT_TLS_CIPHERS, DEFAULT_TLS_GROUPS, ENV_PREFIX, configSchema, knownKeysAt, type ConfigKey, type ParsedConfig, type RawConfig } from './schema.js';
import { BACKEND_AUTH_TIMEOUT_MS, DEFAULT_MAX_HANDSHAKES, DEFAULT_MAX_HANDSHAKES_PER_IP, DEFAULT_MAX_SESSIONS, SHUTDOWN_DRAIN_MS } from './limits.js';
import type { Config, HostPort, LimiterPolicy, UsernameCanonical, ListenerConfig, ListenerKind, RedisTarget } from './types.js';
import { formatDuration, formatHostPort } from './values.js';

export class ConfigError extends Error {
  readonly code = 'E_CONFIG';
  constructor(message: string) {
    // Messages are printed as one stderr line; never let a value smuggle in a second one.
    super(message.replace(/[\r\n]+/g, ' '));
    this.name = 'ConfigError';
  }
}

export type LoadResult =
  | { readonly action: 'help' }
  | { readonly action: 'version' }
  | {
      /** `check`: --check-config was given; print the config and exit instead of serving. */
      readonly action: 'run' | 'check';
      readonly config: Config;
      readonly configFile: string | undefined;
      /** One line each, for the log (or stderr with --check-config): things ignored, not refused. */
      readonly warnings: readonly string[];
    };

/** Where a key's value came from, so an error can point at the thing the user typed. */
type Source = { readonly kind: 'flag' | 'env'; readonly label: string } | { readonly kind: 'file' };

const fail = (message: string): never => {
  throw new ConfigError(`config: ${message}`);
};

// ---------------------------------------------------------------------------------------------
// "Did you mean": unknown keys, flags and env vars are almost always typos of known ones.

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

function closest(word: string, candidates: readonly string[]): string | undefined {
  const normalise = (text: string) => text.toLowerCase().replaceAll('-', '_');
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const candidate of candidates) {
    const distance = editDistance(normalise(word), normalise(candidate));
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best;
}

const hint = (suggestion: string | undefined, fallback: string) =>
  suggestion === undefined ? fallback : `did you mean ${suggestion}?`;

// ---------------------------------------------------------------------------------------------
// Text from flags and env vars → the JS types the schema expects.

const TRUE_WORDS = new Set(['true', '1', 'yes', 'on']);
const FALSE_WORDS = new Set(['false', '0', 'no', 'off']);

function splitList(values: readonly string[]): string[] {
  return values.flatMap((value) => value.split(',')).map((item) => item.trim()).filter((item) => item !== '');
}

function envValue(key: ConfigKey, name: string, text: string): unknown {
  switch (key.kind) {
    case 'list':
      return splitList([text]);
    case 'boolean': {
      const word = text.trim().toLowerCase();
      if (TRUE_WORDS.has(word)) return true;
      if (FALSE_WORDS.has(word)) return false;
      return fail(`${name} ${JSON.stringify(text)} must be true or false`);
    }
    case 'integer':
      // Left as text when not an integer, so the schema reports it like any other bad value.
      return /^-?\d+$/.test(text.trim()) ? Number(text) : text;
    case 'string':
      return text;
  }
}

// ---------------------------------------------------------------------------------------------
// Command line

const CONTROL_FLAGS = {
  config: { type: 'string', short: 'c' },
  'check-config': { type: 'boolean', short: 't' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const satisfies ParseArgsConfig['options'];

/** Short spellings of long flags: `--redis URL` is `--redis-url URL`. */
const FLAG_ALIASES: Readonly<Record<string, string>> = { redis: 'redis-url' };

/** Node 20's parseArgs has no `--no-x`, so every boolean key gets an explicit negative flag. */
const NEGATIVE_PREFIX = 'no-';

function flagOptions(): NonNullable<ParseArgsConfig['options']> {
  const options: NonNullable<ParseArgsConfig['options']> = { ...CONTROL_FLAGS };
  for (const key of CONFIG_KEYS) {
    if (key.kind === 'boolean') {
      options[key.flag] = { type: 'boolean' };
      options[NEGATIVE_PREFIX + key.flag] = { type: 'boolean' };
    } else {
      options[key.flag] = { type: 'string', multiple: key.kind === 'list' };
    }
  }
  for (const [alias, flag] of Object.entries(FLAG_ALIASES)) {
    const target = options[flag];
    if (target !== undefined) options[alias] = target;
  }
  return options;
}

interface CommandLine {
  readonly configFile: string | undefined;
  readonly check: boolean;
  readonly help: boolean;
  readonly version: boolean;
  readonly values: ReadonlyMap<ConfigKey, unknown>;
}

function explainArgvError(error: unknown, options: Record<string, unknown>): never {
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  const quoted = /'([^']*)'/.exec(message)?.[1] ?? '';
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const flag = quoted.replace(/^-+/, '').split('=')[0] ?? '';
    const suggestion = closest(flag, Object.keys(options));
    return fail(`unknown flag ${quoted}; ${hint(suggestion && `--${suggestion}`, 'see popwarden --help')}`);
  }
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
    return fail(`unexpected argument "${quoted}"; popwarden takes only --flags (see popwarden --help)`);
  }
  const flag = quoted.split(' ')[0] ?? quoted;
  if (message.includes('argument missing')) return fail(`${flag} needs a value (see popwarden --help)`);
  if (message.includes('does not take an argument')) {
    const negative = `--${NEGATIVE_PREFIX}${flag.replace(/^--/, '')}`;
    const alternatives = negative.slice(2) in options ? `; use ${flag} or ${negative}` : '';
    return fail(`${flag} is an on/off flag and takes no value${alternatives}`);
  }
  return fail(message.split('. ')[0] ?? message);
}

function readCommandLine(argv: readonly string[]): CommandLine {
  const options = flagOptions();
  let parsed: ReturnType<typeof parseArgs>['values'];
  try {
    parsed = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    return explainArgvError(error, options);
  }
  for (const [alias, flag] of Object.entries(FLAG_ALIASES)) {
    if (parsed[alias] === undefined) continue;
    if (parsed[flag] !== undefined) fail(`--${alias} and --${flag} are the same setting; give one`);
    parsed[flag] = parsed[alias];
  }
  const values = new Map<ConfigKey, unknown>();
  for (const key of CONFIG_KEYS) {
    const given = parsed[key.flag];
    if (key.kind === 'boolean') {
      const negated = parsed[NEGATIVE_PREFIX + key.flag];
      if (given === true && negated === true) fail(`--${key.flag} and --${NEGATIVE_PREFIX}${key.flag} contradict each other; keep one`);
      if (given === true) values.set(key, true);
      if (negated === true) values.set(key, false);
    } else if (Array.isArray(given)) {
      values.set(key, splitList(given as string[]));
    } else if (typeof given === 'string') {
      values.set(key, key.kind === 'integer' ? envValue(key, `--${key.flag}`, given) : given);
    }
  }
  const configFile = parsed['config'];
  return {
    configFile: typeof configFile === 'string' ? configFile : undefined,
    check: parsed['check-config'] === true,
    help: parsed['help'] === true,
    version: parsed['version'] === true,
    values,
  };
}

// ---------------------------------------------------------------------------------------------
// Environment

/**
 * What Kubernetes injects for a Service named popwarden (enableServiceLinks, on by default):
 * POPWARDEN_SERVICE_HOST, POPWARDEN_SERVICE_PORT[_NAME], POPWARDEN_PORT[_995_TCP[_PROTO|_PORT|_ADDR]].
 */
const KUBERNETES_SERVICE_VARIABLE = new RegExp(`^${ENV_PREFIX}(SERVICE_HOST|SERVICE_PORT(_\\w+)?|PORT(_\\d+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)$`);

interface Environment {
  readonly values: Map<ConfigKey, unknown>;
  readonly warnings: string[];
}

/**
 * The POPWARDEN_* variables that name config keys. Unknown ones are ignored with a warning, not
 * refused as unknown flags and keys are: the environment is shared with the platform (Kubernetes
 * service links) and with wrapper scripts, which use the prefix for their own settings.
 */
function readEnvironment(env: NodeJS.ProcessEnv): Environment {
  const byName = new Map(CONFIG_KEYS.map((key) => [key.env, key]));
  const values = new Map<ConfigKey, unknown>();
  const warnings: string[] = [];
  const kubernetes: string[] = [];
  for (const [name, text] of Object.entries(env).sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (!name.startsWith(ENV_PREFIX) || text === undefined) continue;
    const key = byName.get(name);
    if (key !== undefined) {
      values.set(key, envValue(key, name, text));
    } else if (name === `${ENV_PREFIX}CONFIG`) {
      // Ignoring it would serve without the file its author meant; that is worth a refusal.
      fail(`${name} is not supported; give the config file with --config FILE`);
    } else if (KUBERNETES_SERVICE_VARIABLE.test(name)) {
      kubernetes.push(name);
    } else {
      // Compared without the shared prefix, which would otherwise make every name look "close".
      const suggestion = closest(name.slice(ENV_PREFIX.length), [...byName.keys()].map((known) => known.slice(ENV_PREFIX.length)));
      warnings.push(`ignoring unknown environment variable ${name}; ${hint(suggestion && ENV_PREFIX + suggestion, 'unset it if it was meant for popwarden (popwarden --help lists the known ones)')}`);
    }
  }
  if (kubernetes.length > 0) {
    warnings.unshift(
      `ignoring ${kubernetes.join(', ')}: Kubernetes service variables, not settings (enableServiceLinks: false in the pod spec drops them)`,
    );
  }
  return { values, warnings };
}

// ---------------------------------------------------------------------------------------------
// YAML file

interface ConfigFile {
  readonly path: string;
  readonly data: Record<string, unknown>;
  /** The 1-based line of a key (or of its value, for a path into a list), when the file has it. */
  lineOf(path: readonly PropertyKey[], key?: string): number | undefined;
}

function readConfigFile(path: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message;
    return fail(`cannot read config file ${path}: ${reason}`);
  }
  const lineCounter = new LineCounter();
  const doc: Document = parseDocument(text, { lineCounter, prettyErrors: false });
  const syntaxError = doc.errors[0];
  if (syntaxError !== undefined) {
    const at = lineCounter.linePos(syntaxError.pos[0]);
    const position = `${at.line}:${at.col}:`;
    // Unquoted "[::1]:995" is a YAML flow list followed by junk; the parser cannot say so.
    const lineText = text.split('\n')[at.line - 1] ?? '';
    const ipv6Hint = /\[[\da-fA-F:.]*:[\da-fA-F:.]*\]:\d/.test(lineText) ? '; quote IPv6 addresses, e.g. "[::1]:995"' : '';
    return fail(`${path}:${position} YAML syntax error: ${syntaxError.message}${ipv6Hint}`);
  }
  const data: unknown = doc.toJS() ?? {};
  if (typeof data !== 'object' || Array.isArray(data)) {
    return fail(`${path}: the file must be a mapping of keys (key: value), not a ${Array.isArray(data) ? 'list' : 'scalar'}`);
  }
  const lineAt = (offset: number | undefined) => (offset === undefined ? undefined : lineCounter.linePos(offset).line);
  return {
    path,
    data: data as Record<string, unknown>,
    lineOf(keyPath, key) {
      if (key === undefined) {
        const node: unknown = doc.getIn(keyPath, true);
        return lineAt(isNode(node) ? node.range?.[0] : undefined);
      }
      const map: unknown = keyPath.length === 0 ? doc.contents : doc.getIn(keyPath, true);
      if (!isMap(map)) return undefined;
      const pair = map.items.find((item) => isScalar(item.key) && String(item.key.value) === key);
      return lineAt(isScalar(pair?.key) ? pair.key.range?.[0] : undefined);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Merge and validate

function setIn(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const segment of path.slice(0, -1)) {
    const next = node[segment];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[segment] = {};
    node = node[segment] as Record<string, unknown>;
  }
  node[path[path.length - 1] ?? ''] = value;
}

function getIn(target: unknown, path: readonly PropertyKey[]): unknown {
  let node = target;
  for (const segment of path) {
    if (typeof node !== 'object' || node === null) return undefined;
    node = (node as Record<PropertyKey, unknown>)[segment];
  }
  return node;
}

/** Zod's wording for the generic cases, rephrased as the second half of "config: KEY VALUE ...". */
const issueWording: z.core.$ZodErrorMap = (issue) => {
  switch (issue.code) {
    case 'invalid_type': {
      if (issue.input === undefined) return 'is required';
      const expected: Record<string, string> = {
        string: 'must be text',
        boolean: 'must be true or false',
        number: 'must be a whole number',
        array: 'must be a list',
        object: 'must be a mapping of keys',
      };
      return expected[issue.expected] ?? `must be of type ${issue.expected}`;
    }
    case 'invalid_value':
      return `must be one of: ${issue.values.map(String).join(', ')}`;
    case 'too_small':
      return issue.origin === 'string' ? 'must not be empty' : `must be at least ${String(issue.minimum)}`;
    case 'too_big':
      return issue.origin === 'string'
        ? `is longer than ${String(issue.maximum)} characters`
        : `must be at most ${String(issue.maximum)}`;
    default:
      return undefined;
  }
};

function showValue(value: unknown): string {
  if (typeof value === 'string') return ` ${JSON.stringify(value)}`;
  if (typeof value === 'number' || typeof value === 'boolean') return ` ${String(value)}`;
  return '';
}

function explainUnknownKey(issue: z.core.$ZodIssueUnrecognizedKeys, file: ConfigFile | undefined): never {
  const key = issue.keys[0] ?? '';
  const dotted = [...issue.path, key].join('.');
  const line = file?.lineOf(issue.path, key);
  const where = file === undefined ? '' : `${file.path}${line === undefined ? '' : `:${line}`}: `;
  const renamed = RENAMED_KEYS[dotted];
  if (renamed !== undefined) return fail(`${where}"${dotted}" was replaced by "${renamed}"`);
  // A nested key written at the top level ("idle: 10m") is a common slip; point at its real home.
  const misplaced = CONFIG_KEYS.find((known) => known.path.length > 1 && known.path.at(-1) === key);
  const suggestion =
    closest(key, knownKeysAt(issue.path)) ?? (issue.path.length === 0 ? misplaced?.name : undefined);
  const known = [...issue.path, suggestion].filter((part) => part !== undefined).join('.');
  return fail(`${where}unknown key "${dotted}"; ${hint(suggestion && `"${known}"`, 'remove it (popwarden --help lists the known keys)')}`);
}

function explainIssue(
  issue: z.core.$ZodIssue,
  raw: Record<string, unknown>,
  sources: ReadonlyMap<string, Source>,
  file: ConfigFile | undefined,
): never {
  if (issue.code === 'unrecognized_keys') return explainUnknownKey(issue, file);
  const name = issue.path.filter((part) => typeof part === 'string').join('.');
  const display = issue.path.map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? String(part) : `.${String(part)}`)).join('');
  const key = CONFIG_KEYS.find((known) => known.name === name);
  const value = getIn(raw, issue.path);
  const source = sources.get(name);
  let where = display;
  // A rule about several keys ("both empty") reads better with key names than with one key's source.
  const aboutSeveralKeys = issue.code === 'custom' && issue.params?.['severalKeys'] === true;
  if (aboutSeveralKeys) where = display;
  else if (source?.kind === 'flag' || source?.kind === 'env') where = source.label;
  else if (source?.kind === 'file' && file !== undefined) {
    const line = file.lineOf(issue.path);
    where = `${file.path}${line === undefined ? '' : `:${line}`}: ${display}`;
  }
  const remedy =
    value === undefined && issue.code === 'invalid_type' && key !== undefined
      ? `; set it in the config file, with --${key.flag}, or with ${key.env}`
      : '';
  return fail(`${where}${showValue(value)} ${issue.message}${remedy}`);
}

/** Unknown keys first: a misspelt key often also shows up as a "required" error on the real one. */
const issueOrder = (issue: z.core.$ZodIssue) => (issue.code === 'unrecognized_keys' ? 0 : 1);

function validate(raw: Record<string, unknown>, sources: ReadonlyMap<string, Source>, file: ConfigFile | undefined): ParsedConfig {
  const result = configSchema.safeParse(raw, { error: issueWording });
  if (result.success) return result.data;
  const [first] = [...result.error.issues].sort((a, b) => issueOrder(a) - issueOrder(b));
  return first === undefined ? fail('invalid configuration') : explainIssue(first, raw, sources, file);
}

// ---------------------------------------------------------------------------------------------
// Schema output → runtime Config, and back (for --check-config)

/** systemd sets STATE_DIRECTORY to a colon-separated list when several are configured; ours is the first. */
export function defaultStateDir(env: NodeJS.ProcessEnv): string {
  const fromSystemd = env['STATE_DIRECTORY']?.split(':')[0];
  return fromSystemd !== undefined && fromSystemd !== '' ? fromSystemd : './.state';
}

function listener(kind: ListenerKind, address: { host: string; port: number }): ListenerConfig {
  return { kind, host: address.host, port: address.port, name: `${kind}:${formatHostPort(address)}` };
}

/** Relative paths are resolved against the working directory once, so logs show what is really read. */
const absolute = (path: string | undefined) => (path === undefined ? undefined : resolve(path));

function toRuntimeConfig(parsed: ParsedConfig, env: NodeJS.ProcessEnv): Config {
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
      caFile: absolute(parsed.backend_ca),
      tlsInsecure: parsed.backend_tls_insecure,
      tlsServerName: parsed.backend_tls_servername,
      clientCertFile: absolute(parsed.backend_tls_cert),
      clientKeyFile: absolute(parsed.backend_tls_key),
      allowPlaintextAuth: parsed.allow_plaintext_backend_auth,
      trustLoopback: parsed.backend_trust_loopback,
      sourceAddress: parsed.backend_source_address,
    },
    tls: {
      certFile: absolute(parsed.cert),
      keyFile: absolute(parsed.key),
      pfxFile: absolute(parsed.tls.pfx),
      pfxPassphraseFile: absolute(parsed.tls.pfx_passphrase_file),
      certificates: parsed.tls.certificates.map((entry) => ({ names: entry.names, certFile: resolve(entry.cert), keyFile: resolve(entry.key) })),
      serverNames: parsed.tls.server_names,
      watchFiles: parsed.tls.watch_files,
      minVersion: parsed.tls.min_version,
      allowLegacyProtocols: parsed.tls.allow_legacy_protocols,
      ciphers: parsed.tls.ciphers,
      groups: parsed.tls.groups,
      ticketKeysFile: absolute(parsed.tls.ticket_keys_file),
    },
    stateDir: resolve(parsed.state_dir ?? defaultStateDir(env)),
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
      passwordFile: absolute(parsed.redis.password_file),
      tls: parsed.redis.tls,
      commandTimeoutMs: parsed.redis.command_timeout,
      connectTimeoutMs: parsed.redis.connect_timeout,
    },
    rateLimit: {
      keyPrefix: r.key_prefix,
      usernameCanonical: {
        lowerCase: r.username_canonical.lower_case,
        realmSeparators: r.username_canonical.pattern === undefined ? (r.username_canonical.realm_separators ?? DEFAULT_REALM_SEPARATORS) : '',
        pattern: r.username_canonical.pattern,
      },
      ipv6PrefixLength: r.ipv6_prefix,
      userIp: limiterPolicy(r.user_ip),
      ip: limiterPolicy(r.ip),
      user: limiterPolicy(r.user),
      trustedPairMs: r.trusted_for,
      hmacKeyFile: absolute(r.hmac_key_file),
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
    certificates: (tls.certificates ?? []).map((entry) => ({ names: [...entry.names], cert: entry.certFile, key: entry.keyFile })),
    server_names: [...(tls.serverNames ?? [])],
    watch_files: tls.watchFiles ?? false,
    min_version: tls.minVersion ?? 'TLSv1.2',
    allow_legacy_protocols: tls.allowLegacyProtocols ?? false,
    ciphers: tls.ciphers ?? DEFAULT_TLS_CIPHERS,
    groups: tls.groups ?? DEFAULT_TLS_GROUPS,
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
      backend_auth: formatDuration(t.backendAuthMs ?? BACKEND_AUTH_TIMEOUT_MS),
      backend_idle: formatDuration(t.backendIdleMs),
      client_write_stall: formatDuration(t.clientWriteStallMs),
      shutdown: formatDuration(t.shutdownMs ?? SHUTDOWN_DRAIN_MS),
    },
    limits: {
      max_invalid_commands: config.limits.maxInvalidCommands,
      max_sessions_per_ip: config.limits.maxSessionsPerIp,
      max_new_connections_per_ip: config.limits.maxNewConnectionsPerIp,
      max_handshakes_per_ip: config.limits.maxHandshakesPerIp ?? DEFAULT_MAX_HANDSHAKES_PER_IP,
      max_sessions: config.limits.maxSessions ?? DEFAULT_MAX_SESSIONS,
      max_handshakes: config.limits.maxHandshakes ?? DEFAULT_MAX_HANDSHAKES,
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

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// Referenced files: fail at load time, not at the first TLS handshake or backend STLS.

function checkReadableFile(path: string | undefined, keyName: string, remedy: string): void {
  if (path === undefined) return;
  try {
    if (!statSync(path).isFile()) fail(`${keyName} ${path} is not a regular file; ${remedy}`);
    accessSync(path, fsConstants.R_OK);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    const reason =
      code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? `is not readable by this user (uid ${process.getuid?.() ?? '?'})` : `cannot be read (${code ?? 'error'})`;
    fail(`${keyName} ${path} ${reason}; ${remedy}`);
  }
}

function checkReferencedFiles(config: Config): void {
  const certRemedy = 'fix the path, or remove cert and key to use a generated self-signed certificate';
  checkReadableFile(config.tls.certFile, 'cert', certRemedy);
  checkReadableFile(config.tls.keyFile, 'key', certRemedy);
  checkReadableFile(config.tls.pfxFile, 'tls.pfx', 'fix the path, or remove tls.pfx');
  checkReadableFile(config.tls.pfxPassphraseFile, 'tls.pfx_passphrase_file', 'fix the path, or remove the key for an empty passphrase');
  (config.tls.certificates ?? []).forEach((entry, index) => {
    const remedy = 'fix the path, or remove that entry of tls.certificates';
    checkReadableFile(entry.certFile, `tls.certificates[${index}].cert`, remedy);
    checkReadableFile(entry.keyFile, `tls.certificates[${index}].key`, remedy);
  });
  checkReadableFile(config.backend.caFile, 'backend_ca', 'fix the path, or remove backend_ca to use the bundled CA list');
  checkReadableFile(config.backend.clientCertFile, 'backend_tls_cert', 'fix the path, or remove backend_tls_cert and backend_tls_key');
  checkReadableFile(config.backend.clientKeyFile, 'backend_tls_key', 'fix the path, or remove backend_tls_cert and backend_tls_key');
  checkReadableFile(config.redis.passwordFile, 'redis.password_file', 'fix the path, or remove the key');
  checkReadableFile(
    config.rateLimit.hmacKeyFile,
    'rate_limit.hmac_key_file',
    'fix the path, or remove the key to have popwarden generate one in state_dir',
  );
}

// ---------------------------------------------------------------------------------------------

/**
 * flags > env > file > defaults → a deeply frozen Config. Referenced files (cert, key, backend_ca)
 * are checked to exist and be readable, in both run and --check-config mode. Throws ConfigError.
 */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): LoadResult {
  const commandLine = readCommandLine(argv);
  if (commandLine.help) return { action: 'help' };
  if (commandLine.version) return { action: 'version' };

  const environment = readEnvironment(env);
  const fromEnv = environment.values;
  const file = commandLine.configFile === undefined ? undefined : readConfigFile(commandLine.configFile);
  const raw: Record<string, unknown> = structuredClone(file?.data ?? {});
  const sources = new Map<string, Source>();
  for (const key of CONFIG_KEYS) if (getIn(raw, key.path) !== undefined) sources.set(key.name, { kind: 'file' });
  for (const [layer, kind] of [
    [fromEnv, 'env'],
    [commandLine.values, 'flag'],
  ] as const) {
    for (const [key, value] of layer) {
      setIn(raw, key.path, value);
      sources.set(key.name, { kind, label: kind === 'env' ? key.env : `--${key.flag}` });
    }
  }

  const config = deepFreeze(toRuntimeConfig(validate(raw, sources, file), env));
  checkReferencedFiles(config);
  return { action: commandLine.check ? 'check' : 'run', config, configFile: file?.path, warnings: environment.warnings };
}

function placeholder(key: ConfigKey): string {
  if (key.kind === 'boolean') return '';
  if (key.kind === 'integer') return ' N';
  if (key.choices !== undefined) return ` ${key.choices.join('|')}`;
  if (key.name === 'rate_limit.allow' || key.name === 'rate_limit.deny') return ' CIDR';
  if (key.kind === 'list' || key.name === 'backend') return ' HOST:PORT';
  if (key.path.at(0) === 'timeouts' || key.name === 'auth_failure_delay') return ' DURATION';
  if (/(window|block|trusted_for|_timeout)$/.test(key.name)) return ' DURATION';
  if (key.name === 'redis.sentinels' || key.name === 'redis.cluster') return ' HOST:PORT';
  const named: Record<string, string> = {
    'redis.url': 'URL',
    'redis.password_file': 'FILE',
    'rate_limit.hmac_key_file': 'FILE', cert: 'FILE', key: 'FILE', backend_ca: 'FILE', backend_tls_cert: 'FILE', backend_tls_key: 'FILE', state_dir: 'DIR', backend_tls_servername: 'NAME', backend_source_address: 'IP', greeting: 'TEXT' };
  return ` ${named[key.name] ?? 'VALUE'}`;
}

/** --help text, generated from the schema so it can never miss a key. */
export function usage(): string {
  const lines = CONFIG_KEYS.map((key) => {
    const left = `  --${key.flag}${placeholder(key)}`;
    const negative = key.kind === 'boolean' ? ` (or --${NEGATIVE_PREFIX}${key.flag})` : '';
    const repeat = key.kind === 'list' ? ' (repeatable, or comma-separated)' : '';
    const fallback = key.defaultValue === undefined ? '' : ` default ${JSON.stringify(key.defaultValue)}`;
    return `${left.padEnd(44)} ${key.env}${negative}${repeat}${fallback}`;
  });
  return [
    'Usage: popwarden [--config FILE] [options]',
    '       popwarden cert generate --host NAME [--host NAME...] [--days N] [--out DIR]   (RSA 2048 self-signed; --help for more)',
    '       popwarden ratelimit status|unblock|list ...',
    '       popwarden backend show|forget HOST:PORT [--state-dir DIR]   (what each backend offered before)',
    '',
    'SIGHUP (systemctl reload) re-reads the config and the certificates; SIGTERM drains for timeouts.shutdown.',
    '',
    'A TLS front-end for legacy plaintext POP3 servers.',
    '',
    '  -c, --config FILE                          YAML config file (keys as below, snake_case; nested as timeouts: {idle: 10m})',
    '  -t, --check-config                         validate the config and the files it names, print it (secrets masked), exit',
    '  -h, --help                                 this text',
    '      --redis URL                            the same as --redis-url',
    '      --version                              print the version',
    '',
    'Every config key is also a flag and an environment variable (precedence: flag > env > file > default).',
    'Durations need a unit: 500ms, 2s, 10m, 1h (only a bare 0 needs none). Addresses are HOST:PORT, IPv6 as [::1]:995.',
    '',
    ...lines,
    '',
  ].join('\n');
}
