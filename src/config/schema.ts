/**
 * The one description of popwarden's configuration: key names, types, defaults, limits and the
 * reason for each. The YAML file, the POPWARDEN_* environment and the command-line flags are all
 * checked against this schema; runtime.ts maps its output onto the frozen runtime Config.
 *
 * Keys are snake_case in YAML. Each key is also a flag (`backend_tls` → `--backend-tls`, nested
 * `timeouts.idle` → `--timeouts-idle`) and an environment variable (`POPWARDEN_BACKEND_TLS`,
 * `POPWARDEN_TIMEOUTS__IDLE`); CONFIG_KEYS (schema-keys.ts) lists them all, derived from the schema itself.
 */
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { z } from 'zod';
import {
  BACKEND_AUTH_TIMEOUT_MS,
  DEFAULT_MAX_BACKEND_LOGINS_PER_IP,
  DEFAULT_MAX_BACKEND_PROCESSES,
  DEFAULT_MAX_HANDSHAKES,
  DEFAULT_MAX_COMMANDS_BEFORE_LOGIN,
  DEFAULT_MAX_HANDSHAKES_PER_IP,
  DEFAULT_MAX_NEW_CONNECTIONS_PER_IP_PER_MINUTE,
  DEFAULT_MAX_PROTOCOL_ERRORS_PER_IP_PER_HOUR,
  DEFAULT_MAX_SESSIONS,
  MAX_SHUTDOWN_MS,
  MIN_IDLE_TIMEOUT_MS,
  SHUTDOWN_DRAIN_MS,
} from './limits.js';
import { BACKEND_AUTH_MODES, BACKEND_PROXY_PROTOCOL_MODES, BACKEND_TLS_MODES, BACKEND_XCLIENT_MODES, LOG_LEVELS, STORE_FAILURE_MODES, TLS_VERSIONS, type HostPort } from './types.js';
import {
  MAX_STORE_DURATION_MS,
  formatCidr,
  formatDuration,
  execAddress,
  formatHostPort,
  parseBackendAddress,
  parseCidr,
  parseDuration,
  parseHostPort,
  type HostPortRules,
  type Parsed,
} from './values.js';
import { routingSchemas } from './routing-schema.js';
import { DEFAULT_TLS_CIPHERS, DEFAULT_TLS_GROUPS, MIN_TLS_VERSION, isLegacyTlsVersion } from '../tls/policy.js';
import { canonicalServerName } from '../tls/sni.js';

/**
 * How a parsed value is written back in --check-config output, declared on the value helpers
 * below and read through CONFIG_KEYS (schema-keys.ts). A value without one is written as parsed.
 */
export type ValueSyntax = 'duration' | 'host-port' | 'host-port-or-off' | 'listener' | 'backend-address' | 'named-backends';
const writtenAs = (syntax: ValueSyntax) => ({ syntax });

/** Turns a values.ts parser into a string schema whose output is the parsed value. */
function parsedString<T>(parse: (text: string) => Parsed<T>) {
  return z.string().transform((text, ctx): T => {
    const result = parse(text);
    if (result.ok) return result.value;
    ctx.issues.push({ code: 'custom', message: result.problem, input: text });
    return z.NEVER;
  });
}

/**
 * A duration with a unit, as milliseconds. YAML turns `idle: 600` into a number before we see
 * it, so the "no unit" hint is given for numbers too, not only for the string "600"; the number
 * 0 is read as the text "0", which needs no unit.
 */
function duration(maxMs?: number) {
  const text = z.string({
    error: (issue) =>
      typeof issue.input === 'number' ? `has no unit; write it with one, e.g. "${issue.input}s"` : undefined,
  });
  return z
    .preprocess((value) => (value === 0 ? '0' : value), text.pipe(parsedString((value) => parseDuration(value, maxMs))))
    .meta(writtenAs('duration'));
}

/** A TTL in the rate-limit store: never a timer, so it may be longer than Node's 24-day timer limit. */
const storeDuration = () => duration(MAX_STORE_DURATION_MS);

/** A CIDR block, kept as its canonical text ("192.0.2.0/24", "2001:db8::1"). */
const cidrList = z.array(parsedString((text) => {
  const parsed = parseCidr(text);
  return parsed.ok ? { ok: true as const, value: formatCidr(parsed.value) } : parsed;
}));

function hostPort(rules: HostPortRules) {
  return parsedString((text) => parseHostPort(text, rules)).meta(writtenAs('host-port'));
}

const listenerAddress = hostPort({ allowPortZero: true });

/** A listener behind a load balancer: its address with the PROXY protocol options. */
const proxiedListener = z.strictObject({
  /** HOST:PORT to listen on, as in the plain form. */
  address: listenerAddress,
  /**
   * Default false. Every connection must start with a PROXY protocol header (v1 or v2, as
   * HAProxy's send-proxy / send-proxy-v2 write it) from an address in proxy_protocol_trusted; the
   * client address it carries is the one every limit, log and audit line uses. A connection
   * without one, with a broken one, or from anyone else is closed before any TLS or POP3 work.
   */
  proxy_protocol: z.boolean().prefault(false),
  /** Default []; required with proxy_protocol. CIDRs of the load balancers allowed to send the header. */
  proxy_protocol_trusted: cidrList.prefault([]),
});

/**
 * One listener: `HOST:PORT`, or `{address: HOST:PORT, proxy_protocol: true,
 * proxy_protocol_trusted: [CIDRs]}` behind a load balancer. Always the object form once parsed.
 */
const listenerEntry = z
  .union([
    listenerAddress.transform((address) => ({ address, proxy_protocol: false, proxy_protocol_trusted: [] as string[] })),
    proxiedListener,
  ])
  .meta(writtenAs('listener'));

const listenerList = z.array(listenerEntry);

/** A name the child's environment may hold (POSIX: letters, digits, underscore; no leading digit). */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The structured exec: form, for arguments with spaces, an environment or a working directory. */
const execBackendSchema = z
  .strictObject({
    exec: z.strictObject({
      /** Absolute path of the program, run without a shell. */
      command: z.string().min(1),
      /** Default []. Its arguments, each passed as it is. */
      args: z.array(z.string()).prefault([]),
      /** Default {}. Variables added to the child's minimal environment. */
      environment: z
        .record(z.string(), z.string())
        .superRefine((environment, ctx) => {
          for (const name of Object.keys(environment).filter((key) => !ENV_NAME.test(key))) {
            ctx.addIssue({ code: 'custom', path: [name], message: 'is not an environment variable name (letters, digits and _)' });
          }
        })
        .prefault({}),
      /** Optional absolute working directory; default "/". */
      cwd: z.string().refine((dir) => dir.startsWith('/'), { message: 'must be an absolute path' }).optional(),
    }),
  })
  .transform(({ exec }, ctx) => {
    const result = execAddress(exec.command, exec.args, exec.environment, exec.cwd);
    if (result.ok) return result.value;
    ctx.issues.push({ code: 'custom', message: result.problem, input: exec.command, path: ['exec', 'command'] });
    return z.NEVER;
  });

const backendString = parsedString(parseBackendAddress);

/**
 * `HOST:PORT`, `unix:/path.sock`, `exec:/path/to/server args`, or the structured exec form. Chosen
 * by the value's type rather than with a zod union, whose refusal would be a bare "Invalid input"
 * where the user needs the one problem of the form they wrote.
 */
const backendAddress = z
  .unknown()
  .transform((value, ctx) => {
    const form = typeof value === 'object' && value !== null ? execBackendSchema : backendString;
    const result = form.safeParse(value);
    if (result.success) return result.data;
    // Custom problems keep their words; zod's generic ones get the outer error map's wording.
    for (const { message, ...issue } of result.error.issues) ctx.issues.push({ ...issue, ...(issue.code === 'custom' ? { message } : {}), input: value } as never);
    return z.NEVER;
  })
  .meta(writtenAs('backend-address'));

/**
 * A path to a file popwarden reads (cert, key, CA bundle), made absolute against the working
 * directory once, here, so that logs and --check-config show what is really read. Existence is
 * checked by file-checks.ts.
 */
const filePath = z
  .string()
  .min(1)
  .transform((path) => resolve(path));

/**
 * Printable ASCII without `<` and `>`: a greeting containing `<...@...>` would look like an APOP
 * timestamp (RFC 1939 §7), and clients would happily compute APOP digests against it.
 */
const GREETING_TEXT = /^[\x20-\x3b\x3d\x3f-\x7e]+$/;

const timeoutsSchema = z.strictObject({
  /** Default 60s. Absolute deadline from TCP connect to a completed login: bounds slowloris-style clients that trickle bytes. */
  pre_auth: duration().prefault('60s'),
  /**
   * Default 10m, minimum 10m. Autologout after login. RFC 1939 §3: the server's inactivity timer
   * "MUST be of at least 10 minutes' duration"; shorter cuts off conforming clients mid-session.
   */
  idle: duration()
    .refine((ms) => ms >= MIN_IDLE_TIMEOUT_MS, {
      message: "is below RFC 1939's 10 minute minimum; use 10m or more",
    })
    .prefault('10m'),
  /** Default 10s. TLS handshake on the implicit-TLS port and after STLS; Node's own default (120s) lets idle half-open sockets pile up. */
  tls_handshake: duration().prefault('10s'),
  /** Default 3s. How long a listener with proxy_protocol waits for the whole PROXY header; a load balancer sends it at once, so a slow one is not one. */
  proxy_protocol: duration().prefault('3s'),
  /** Default 10s. Connect to the backend (TCP or its UNIX socket), or start its program; a dead backend should fail the login quickly, not hang the client. */
  backend_connect: duration().prefault('10s'),
  /** Default 15s. Each step of the backend login script before the credentials (greeting, CAPA, STLS). */
  backend_step: duration().prefault('15s'),
  /**
   * Default 30s. Each backend reply once the login has begun (SASL challenges, the verdict):
   * longer than the backend's largest per-address penalty (Dovecot: 15 s plus 2 s), which it
   * applies here, so that a penalised correct login is not cut off as "backend unavailable".
   */
  backend_auth: duration().prefault(formatDuration(BACKEND_AUTH_TIMEOUT_MS)),
  /** Default 10m. Backend silence while a reply is outstanding after login (a large RETR from a slow disk is still progress). */
  backend_idle: duration().prefault('10m'),
  /** Default 10m. How long a client may leave our writes unread (full TCP window) before it is dropped; bounds buffered memory per session. */
  client_write_stall: duration().prefault('10m'),
  /**
   * Default 20s, at most 50s. On SIGTERM, how long commands in flight may finish before the
   * remaining sessions are closed. Kept below the systemd unit's TimeoutStopSec=60s, which would
   * otherwise SIGKILL popwarden mid-drain.
   */
  shutdown: duration(MAX_SHUTDOWN_MS).prefault(formatDuration(SHUTDOWN_DRAIN_MS)),
});

const limitsSchema = z.strictObject({
  /** Default 5, range 1..100. Invalid commands tolerated per connection before it is closed (nginx `max_errors`): scanners and protocol confusion give up fast. */
  max_invalid_commands: z.number().int().min(1).max(100).prefault(5),
  /**
   * Default 50, 0 = no bound, else at least 10. Commands one connection may send before it has
   * logged in (valid ones too); the next gets `-ERR` and the connection closes: a real client
   * needs a handful, a pipelined flood of CAPA only spends CPU.
   */
  max_commands_before_login: z
    .number()
    .int()
    .min(0)
    .max(100_000)
    .refine((n) => n === 0 || n >= 10, { message: 'must be 0 (no bound) or at least 10: a real client needs several commands to log in' })
    .prefault(DEFAULT_MAX_COMMANDS_BEFORE_LOGIN),
  /** Default 20, 0 = no bound. Concurrent sessions from one address (IPv6: its /64), checked at TCP accept before any TLS work: one host cannot hold every socket (popa3d MAX_SESSIONS_PER_SOURCE). */
  max_sessions_per_ip: z.number().int().min(0).max(100_000).prefault(20),
  /** Default 10, 0 = no bound. New connections from one address per second: a reconnect storm or a handshake flood is refused before it costs a TLS handshake. */
  max_new_connections_per_ip: z.number().int().min(0).max(100_000).prefault(10),
  /**
   * Default 60, 0 = no bound. New connections from one address in any minute (a sliding minute,
   * under the per-second burst above): the sustained rate of a flood that keeps going, refused
   * before any TLS work. Many users behind one address (a carrier NAT) may need more, or rate_limit.allow.
   */
  max_new_connections_per_ip_per_minute: z.number().int().min(0).max(1_000_000).prefault(DEFAULT_MAX_NEW_CONNECTIONS_PER_IP_PER_MINUTE),
  /**
   * Default 10, 0 = no bound. Sessions from one address that may end in a protocol error (line too
   * long, too many invalid commands or commands before login, another protocol on the port) in any
   * hour (sliding); past it the address is refused at connect, before any TLS work. Addresses a
   * login succeeded from lately are never refused by it.
   */
  max_protocol_errors_per_ip_per_hour: z.number().int().min(0).max(1_000_000).prefault(DEFAULT_MAX_PROTOCOL_ERRORS_PER_IP_PER_HOUR),
  /** Default 10, 0 = no bound. TLS handshakes in progress from one address (implicit port and STLS); more are closed before any TLS work, so a handshake flood cannot starve the event loop. */
  max_handshakes_per_ip: z.number().int().min(0).max(100_000).prefault(DEFAULT_MAX_HANDSHAKES_PER_IP),
  /**
   * Default 5000, 0 = no bound. Client connections open at once, from all addresses (allow-listed
   * ones too): more are refused at TCP accept (`-ERR [SYS/TEMP]` on the STLS port, a bare close on
   * the TLS port). Each needs two file descriptors: keep 2 × max_sessions + 320 under `ulimit -n`.
   */
  max_sessions: z.number().int().min(0).max(1_000_000).prefault(DEFAULT_MAX_SESSIONS),
  /** Default 256, 0 = no bound. TLS handshakes in progress from all addresses (implicit port and STLS); more are closed before any TLS work. */
  max_handshakes: z.number().int().min(0).max(1_000_000).prefault(DEFAULT_MAX_HANDSHAKES),
  /**
   * Default 100, range 1..100000. Backend programs (`backend: exec:...`) running at once, one per
   * logged-in session: more logins are refused with `-ERR [SYS/TEMP]` before anything is started,
   * so a login flood cannot fork the host to death.
   */
  max_backend_processes: z.number().int().min(1).max(100_000).prefault(DEFAULT_MAX_BACKEND_PROCESSES),
  /**
   * Default 5, 0 = no bound. Backend programs (`exec:`) one client address (IPv6: its
   * rate_limit.ipv6_prefix network) may hold while their login is in progress; more logins from it
   * are refused with `-ERR [SYS/TEMP]` before anything is started, so a few addresses sending wrong
   * passwords in parallel cannot hold every program (xinetd `per_source`). Allow-listed addresses
   * (rate_limit.allow) are exempt.
   */
  max_backend_logins_per_ip: z.number().int().min(0).max(100_000).prefault(DEFAULT_MAX_BACKEND_LOGINS_PER_IP),
});

/** A DNS name a certificate is chosen for: `mail.example.org`, or `*.example.org` (one left-most label, RFC 6125 §6.4.3). */
const SERVER_NAME = /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
const serverName = z
  .string()
  .regex(SERVER_NAME, { message: 'is not a host name (a wildcard may only be the whole left-most label, e.g. *.example.org)' })
  .refine((name) => !name.startsWith('*.') || name.split('.').length >= 3, {
    message: 'is a wildcard over a single label; use *.example.org, not *.org',
  })
  .transform(canonicalServerName);

const tlsSchema = z.strictObject({
  /** Default []. Certificates chosen by the name the client sends (SNI): `[{names: [mail.example.org, "*.example.net"], cert: FILE, key: FILE}]`. Clients that send no name or an unknown one get the top-level cert/key (or pfx, or the self-signed pair). */
  certificates: z
    .array(z.strictObject({ names: z.array(serverName).min(1), cert: filePath, key: filePath }))
    .prefault([]),
  /** Default []. Names clients use to reach popwarden; --check-config fails when the default certificate does not cover one. */
  server_names: z.array(serverName).prefault([]),
  /** Default false. Also reload (as on SIGHUP) when a certificate, key or pfx file changes; changes are debounced. */
  watch_files: z.boolean().prefault(false),
  /** Default TLSv1.2. TLSv1 and TLSv1.1 also need allow_legacy_protocols: true. */
  min_version: z.enum(TLS_VERSIONS).prefault(MIN_TLS_VERSION),
  /** Default false. Allow min_version TLSv1 or TLSv1.1 (broken protocols; OpenSSL 3 needs @SECLEVEL=0 for them, which popwarden adds). Logged loudly at every start. */
  allow_legacy_protocols: z.boolean().prefault(false),
  /** Default: Mozilla intermediate (ECDHE with AES-GCM or CHACHA20-POLY1305). OpenSSL cipher string for TLS 1.2 and below; TLS 1.3 keeps OpenSSL's AEAD suites. */
  ciphers: z.string().min(1).prefault(DEFAULT_TLS_CIPHERS),
  /** Default X25519:prime256v1:secp384r1. Key-exchange groups in preference order (Node's ecdhCurve). */
  groups: z.string().min(1).prefault(DEFAULT_TLS_GROUPS),
  /** Optional. File with 48 bytes (raw, or base64) of session ticket keys; instances behind one address share it so tickets resume anywhere. Created with mode 0600 if absent; re-read on reload, so rotating means rewriting it and reloading every instance. Default: random keys per start and per reload. */
  ticket_keys_file: filePath.optional(),
  /** Optional PKCS#12 file (certificate chain + key) instead of cert/key. Legacy RC2-40 files, which OpenSSL 3 rejects, are converted in memory. */
  pfx: filePath.optional(),
  /** Optional file holding the pfx passphrase (mode 0600); default: an empty passphrase. */
  pfx_passphrase_file: filePath.optional(),
});

const HOST_PORT_LIST = z.array(hostPort({ allowPortZero: false }));

const redisSchema = z.strictObject({
  /** Optional. `redis://[user:pass@]host:port[/db]` or `rediss://` (TLS). Unset together with sentinels and cluster: the limits live in process memory. */
  url: z
    .string()
    .refine((text) => /^rediss?:\/\/[^\s]+$/.test(text), { message: 'must start with redis:// or rediss://' })
    .optional(),
  /** Optional. Sentinel addresses (HOST:PORT); needs `name`. For a Redis replicated with Sentinel. */
  sentinels: HOST_PORT_LIST.optional(),
  /** The Sentinel master name (e.g. mymaster); only with `sentinels`. */
  name: z.string().min(1).optional(),
  /** Optional. Startup nodes of a Redis Cluster (HOST:PORT); the rest of the cluster is discovered. */
  cluster: HOST_PORT_LIST.optional(),
  /** Optional. Username (Redis 6 ACL) for Sentinel and Cluster nodes; a URL carries its own. */
  username: z.string().min(1).optional(),
  /** Optional. File holding the Redis password (mode 0600) for Sentinel and Cluster nodes; a URL carries its own. Never in argv. */
  password_file: filePath.optional(),
  /** Default false. TLS to Sentinel and Cluster nodes (a URL says so with rediss://). */
  tls: z.boolean().prefault(false),
  /** Default 500ms. Every Redis command fails after this long, so a hung Redis cannot hold a login: the insurance limiter (or fail_closed) decides instead. */
  command_timeout: duration().prefault('500ms'),
  /** Default 2s. TCP connect to Redis; a dead Redis is noticed within this at startup and on reconnect. */
  connect_timeout: duration().prefault('2s'),
});

/**
 * A limiter's window or block: at least 1s. `0s` is refused, not read as 1 s or as "off": a
 * limiter is switched off with max_failures: 0, and only so (issue 9.5).
 */
const limiterDuration = () =>
  storeDuration().refine((ms) => ms >= 1_000, {
    message: 'is under 1s, which is no limit; use 1s or more (to switch this limiter off, set its max_failures to 0)',
  });

/** One failure counter. */
const limiterSchema = (maxFailures: number, window: string, block: string) =>
  z.strictObject({
    /** Failures within `window` that trigger the block; 0 switches this limiter off. */
    max_failures: z.number().int().min(0).max(1_000_000).prefault(maxFailures),
    /** At least 1s, counted in whole seconds. How long failures are remembered (the counter's TTL from its first attempt). */
    window: limiterDuration().prefault(window),
    /** At least 1s. How long the key stays blocked once max_failures is reached. */
    block: limiterDuration().prefault(block),
  });

/** Keys that were replaced: the error names the new one. */
export const RENAMED_KEYS: Readonly<Record<string, string>> = {
  'rate_limit.normalise_usernames': 'rate_limit.username_canonical (lower_case, realm_separators)',
};

/** solid-pop3d's realm separators: the default of rate_limit.username_canonical.realm_separators. */
export const DEFAULT_REALM_SEPARATORS = '@%';

/** The one capture group of a username pattern: checked here, so a bad one fails at load. */
function captureGroups(pattern: string): number | undefined {
  try {
    // An alternative that matches "" makes exec return one slot per group.
    return (new RegExp(`${pattern}|`).exec('')?.length ?? 1) - 1;
  } catch {
    return undefined;
  }
}

const usernameCanonicalSchema = z
  .strictObject({
    /** Default true. Lower-case the name (most backends' logins are not case-sensitive). false only for a backend where Alice and alice are different accounts. */
    lower_case: z.boolean().prefault(true),
    /** Default "@%". The name ends at the first of these characters: solid-pop3d logs alice@x and alice%x in as alice. "" keeps realms (a backend where alice@a and alice@b are different accounts). */
    realm_separators: z
      .string()
      .regex(/^[\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e]{0,8}$/, { message: 'must be up to 8 punctuation characters, e.g. "@%" or ""' })
      .optional(),
    /** Optional, instead of realm_separators. A regular expression with one capture group: the account is the capture (names it does not match count whole). It runs on every login against text the client chose: keep it simple. */
    pattern: z
      .string()
      .min(1)
      .refine((pattern) => captureGroups(pattern) !== undefined, { message: 'is not a valid regular expression' })
      .refine((pattern) => (captureGroups(pattern) ?? 1) === 1, { message: 'must have exactly one capture group (the account)' })
      .optional(),
  })
  .refine((rule) => rule.pattern === undefined || rule.realm_separators === undefined, {
    message: 'takes realm_separators or pattern, not both',
    params: { severalKeys: true },
  });

const rateLimitSchema = z.strictObject({
  /** Default "popwarden". Prefix of every Redis key; instances that share limits must share it. */
  key_prefix: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, { message: 'must be 1 to 64 letters, digits, "_", "." or "-"' })
    .prefault('popwarden'),
  /** How the backend turns a typed username into an account; every limit counts the account, so its spellings cannot be guessed separately. Names are always trimmed. See the per-server table in docs/SECURITY.md (Spellings of one account). */
  username_canonical: usernameCanonicalSchema.prefault({}),
  /** Default 64. IPv6 clients are counted by this prefix: one customer usually holds a whole /64, and rotating addresses inside it must not reset the count. */
  ipv6_prefix: z.number().int().min(32).max(128).prefault(64),
  /** Default 10 failures in 90d, blocked 1h. Consecutive failures of one user from one address (a success resets it): stops guessing one account from one place. */
  user_ip: limiterSchema(10, '90d', '1h').prefault({}),
  /** Default 100 failures in 1d, blocked 1d. All failures from one address: stops password spraying across many users. */
  ip: limiterSchema(100, '1d', '1d').prefault({}),
  /** Default 50 failures in 1h, blocked 15m. All failures of one user from anywhere (distributed guessing); never applied to a trusted pair, so a botnet cannot lock the real user out. */
  user: limiterSchema(50, '1h', '15m').prefault({}),
  /** Default 30d. After a successful login from an address, that user+address is trusted this long: exempt from the per-user block. 0s trusts no pair. */
  trusted_for: storeDuration().prefault('30d'),
  /** Optional. File with the key (at least 32 bytes) of the HMAC that recognises a repeated wrong password. Default: generated in state_dir on first start (mode 0600). Instances sharing one Redis must share this file. */
  hmac_key_file: filePath.optional(),
  /** Default []. CIDRs never rate-limited and exempt from the per-IP connection bounds (your webmail, monitoring). */
  allow: cidrList.prefault([]),
  /** Default []. CIDRs refused at connect with -ERR [SYS/PERM]. Deny wins over allow. */
  deny: cidrList.prefault([]),
  /** Default insurance: when Redis fails or is slow, logins go on under an in-memory limiter with the same numbers. fail_closed refuses them with -ERR [SYS/TEMP] instead. */
  on_store_failure: z.enum(STORE_FAILURE_MODES).prefault('insurance'),
});

/** A local address to connect from. */
const ipAddress = z.string().refine((text) => isIP(text) !== 0, { message: 'is not an IP address; use e.g. 192.0.2.10 or 2001:db8::10' });

/** Named backends and routing (issue 13), on the same value helpers as the keys above. */
const routingKeys = routingSchemas({ address: backendAddress, duration, filePath, ipAddress });

export const configSchema = z
  .strictObject({
    /** Default ["0.0.0.0:995"]. Implicit-TLS listeners (HOST:PORT; IPv6 as [::]:995), each also `{address, proxy_protocol, proxy_protocol_trusted}` behind a load balancer. Port 0 picks a free port (tests). May be [] if listen_stls is not. */
    listen_tls: listenerList.prefault(['0.0.0.0:995']),
    /** Default ["0.0.0.0:110"]. Plaintext listeners that require STLS before any credentials; entries as in listen_tls. May be [] if listen_tls is not. */
    listen_stls: listenerList.prefault(['0.0.0.0:110']),
    /**
     * The legacy POP3 server, one backend named `default`; required unless `backends` names them:
     * HOST:PORT (port 1..65535); `unix:/run/ipop3d.sock` (a UNIX-domain socket, e.g. a systemd
     * socket unit with Accept=yes); or `exec:/usr/sbin/ipop3d [args]`, a program started for each
     * session with the connection as stdin and stdout, as inetd does (split on whitespace, no
     * shell; the mapping `{exec: {command, args, environment, cwd}}` for anything more).
     */
    backend: backendAddress.optional(),
    /** Instead of `backend` and the backend_* keys: named backends, `NAME: {address, auth, tls, ...}` (address in any form `backend` takes), chosen per user by `routing`. */
    backends: routingKeys.backends.meta(writtenAs('named-backends')).optional(),
    /** How each login's backend is chosen among `backends`: static routes, a map file, a Redis hash, an auth_http service, a default. */
    routing: routingKeys.routing.prefault({}),
    /** Default auto: the strongest mechanism the backend offers (APOP, CRAM-MD5, then plaintext ones if allowed). Pin one to refuse a downgrade. */
    backend_auth: z.enum(BACKEND_AUTH_MODES).prefault('auto'),
    /** Default auto: STLS to the backend when its CAPA offers it. `starttls` requires it; `implicit` speaks TLS from the first byte (a POP3S port); `off` never tries (loopback backends). */
    backend_tls: z.enum(BACKEND_TLS_MODES).prefault('auto'),
    /** Optional PEM file of CAs that sign the backend's certificate; default is Node's bundled CA list. */
    backend_ca: filePath.optional(),
    /** Default false. Accept any backend certificate (self-signed legacy hosts). Defeats MITM protection on that link; logged loudly. */
    backend_tls_insecure: z.boolean().prefault(false),
    /** Optional. Name to verify in the backend certificate, when `backend` is an IP or an alias; default is the backend host. */
    backend_tls_servername: z.string().min(1).optional(),
    /** Optional PEM client certificate chain, for backends that require one on their TLS port. With backend_tls_key. */
    backend_tls_cert: filePath.optional(),
    /** Optional PEM private key (unencrypted) for backend_tls_cert. */
    backend_tls_key: filePath.optional(),
    /** Default false. Allow USER/PASS, AUTH PLAIN and AUTH LOGIN in clear to a non-loopback backend: passwords cross the network unencrypted. */
    allow_plaintext_backend_auth: z.boolean().prefault(false),
    /**
     * Default: only on a privileged port. Whether a loopback backend counts as a secure link for
     * cleartext logins: sniffing loopback needs root, but any local user can bind a port above
     * 1023 while the backend is down and collect passwords. true: any port; false: never.
     */
    backend_trust_loopback: z.boolean().optional(),
    /** Optional local IP to connect to the backend from (multi-homed gateways, backend ACLs). */
    backend_source_address: ipAddress.optional(),
    /**
     * Default off. Open every backend connection with a PROXY protocol header (v1 text or v2
     * binary) naming the client, so the backend's logs and per-address limits see the client,
     * not popwarden; the health probe sends v2 LOCAL (v1 UNKNOWN) instead. Only for a backend
     * that expects the header (Dovecot: `haproxy = yes` on its listener and popwarden's address
     * in haproxy_trusted_networks): any other reads it as a broken first command.
     */
    backend_proxy_protocol: z.enum(BACKEND_PROXY_PROTOCOL_MODES).prefault('off'),
    /**
     * Default off. auto: when the backend offers XCLIENT (Dovecot advertises it as `[XCLIENT]` in
     * its greeting to addresses in login_trusted_networks; others in CAPA), send `XCLIENT ADDR=…
     * PORT=…` with the client's address before the login, inside TLS when the link uses it.
     */
    backend_xclient: z.enum(BACKEND_XCLIENT_MODES).prefault('off'),
    /** Optional PEM certificate chain for clients. With `key`; if both are absent a self-signed pair is generated in state_dir. */
    cert: filePath.optional(),
    /** Optional PEM private key (unencrypted, mode 0600) matching `cert`. */
    key: filePath.optional(),
    /** Certificates by server name (SNI), PKCS#12, protocol policy, session tickets and reload. */
    tls: tlsSchema.prefault({}),
    /** Default $STATE_DIRECTORY (set by systemd's StateDirectory=) else ./.state. Holds the first-run self-signed certificate and the generated HMAC key; refused when another user owns it or group/others may write it (config/state-dir.ts). */
    state_dir: z.string().min(1).optional(),
    /** Default "popwarden ready". popwarden's own greeting text (the backend banner is never shown): printable ASCII, no `<` or `>`, at most 200 characters. */
    greeting: z
      .string()
      .min(1)
      .max(200)
      .regex(GREETING_TEXT, {
        message: 'must be printable ASCII without "<" or ">" (it must never look like an APOP timestamp)',
      })
      .prefault('popwarden ready'),
    /** Default 2s, 0 allowed. One step of the grid on which failed logins are answered (a whole number of steps after the credentials, the same for every failure while the backend is slow): slows password guessing without a lockout. */
    auth_failure_delay: duration().prefault('2s'),
    /** Default info. One of trace, debug, info, warn, error, fatal, silent. */
    log_level: z.enum(LOG_LEVELS).prefault('info'),
    /**
     * Default "127.0.0.1:9595". Where /metrics, /healthz and /readyz are served (HOST:PORT), or
     * "off". Keep it on loopback or an admin network: it is plain HTTP without authentication.
     */
    metrics_listen: z
      .string()
      .transform((text, ctx): HostPort | 'off' => {
        if (text === 'off') return 'off';
        const parsed = parseHostPort(text, { allowPortZero: true });
        if (parsed.ok) return parsed.value;
        ctx.issues.push({ code: 'custom', message: `${parsed.problem}, or "off"`, input: text });
        return z.NEVER;
      })
      .meta(writtenAs('host-port-or-off'))
      .prefault('127.0.0.1:9595'),
    /** Default 30s; 0s turns it off. How often the backend is probed (connect and greeting) for the backend-up metric and /readyz. */
    backend_probe_interval: duration().prefault('30s'),
    /** Per-phase timeouts; every value is a duration with a unit (500ms, 2s, 10m, 1h). */
    timeouts: timeoutsSchema.prefault({}),
    /** Per-connection abuse limits. */
    limits: limitsSchema.prefault({}),
    /** The shared store of the failed-login limits. Without it the limits live in process memory. */
    redis: redisSchema.prefault({}),
    /** Failed-login protection: limits by user+IP, IP and user; allow and deny lists. */
    rate_limit: rateLimitSchema.prefault({}),
  })
  .superRefine((config, ctx) => {
    checkBackendsAndRoutes(config, ctx);
    if (config.listen_tls.length === 0 && config.listen_stls.length === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['listen_tls'],
        message: 'and listen_stls are both empty; popwarden needs at least one listener',
        params: { severalKeys: true },
      });
    }
    if ((config.cert === undefined) !== (config.key === undefined)) {
      const missing = config.cert === undefined ? 'cert' : 'key';
      const given = missing === 'cert' ? 'key' : 'cert';
      ctx.addIssue({
        code: 'custom',
        path: [given],
        message: `is set but ${missing} is not; give both, or neither for a self-signed certificate`,
      });
    }
    if (config.tls.pfx !== undefined && config.cert !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['tls', 'pfx'], message: 'is set together with cert/key; give one of them' });
    }
    if (isLegacyTlsVersion(config.tls.min_version) && !config.tls.allow_legacy_protocols) {
      ctx.addIssue({
        code: 'custom',
        path: ['tls', 'min_version'],
        message: 'allows a broken protocol version; set tls.allow_legacy_protocols: true as well if ancient clients really need it',
      });
    }
    const sniNames = new Set<string>();
    config.tls.certificates.forEach((entry, index) => {
      for (const name of entry.names) {
        if (sniNames.has(name)) {
          ctx.addIssue({ code: 'custom', path: ['tls', 'certificates', index, 'names'], message: `lists ${name} twice; each name picks one certificate` });
        }
        sniNames.add(name);
      }
    });
    if (config.backend_source_address !== undefined && config.backend !== undefined && config.backend.kind !== 'tcp') {
      ctx.addIssue({ code: 'custom', path: ['backend_source_address'], message: `applies only to a HOST:PORT backend, not to ${config.backend.kind}:` });
    }
    if ((config.backend_tls_cert === undefined) !== (config.backend_tls_key === undefined)) {
      const given = config.backend_tls_cert === undefined ? 'backend_tls_key' : 'backend_tls_cert';
      const missing = given === 'backend_tls_key' ? 'backend_tls_cert' : 'backend_tls_key';
      ctx.addIssue({ code: 'custom', path: [given], message: `is set but ${missing} is not; give both, or neither` });
    }
    const redisTargets = (['url', 'sentinels', 'cluster'] as const).filter((key) => config.redis[key] !== undefined);
    if (redisTargets.length > 1) {
      ctx.addIssue({
        code: 'custom',
        path: ['redis', redisTargets[1] ?? 'cluster'],
        message: `is set together with redis.${redisTargets[0] ?? 'url'}; give one of url, sentinels or cluster`,
      });
    }
    if ((config.redis.sentinels === undefined) !== (config.redis.name === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['redis', config.redis.sentinels === undefined ? 'name' : 'sentinels'],
        message: 'needs both redis.sentinels and redis.name (the Sentinel master name)',
      });
    }
    for (const list of ['sentinels', 'cluster'] as const) {
      if (config.redis[list]?.length === 0) {
        ctx.addIssue({ code: 'custom', path: ['redis', list], message: 'is empty; list at least one HOST:PORT or remove the key' });
      }
    }
    const seen = new Set<string>();
    for (const [kind, list] of [
      ['listen_tls', config.listen_tls],
      ['listen_stls', config.listen_stls],
    ] as const) {
      list.forEach(({ address, proxy_protocol: proxied, proxy_protocol_trusted: trusted }, index) => {
        if (proxied && trusted.length === 0) {
          ctx.addIssue({
            code: 'custom',
            path: [kind, index, 'proxy_protocol_trusted'],
            message: "is empty; list the load balancers' addresses (CIDRs) that may send the PROXY header",
          });
        }
        if (!proxied && trusted.length > 0) {
          ctx.addIssue({ code: 'custom', path: [kind, index, 'proxy_protocol_trusted'], message: 'is set but proxy_protocol is not true' });
        }
        const text = formatHostPort(address);
        // Port 0 is "any free port": two of those never collide.
        if (address.port !== 0 && seen.has(text)) {
          ctx.addIssue({
            code: 'custom',
            path: [kind, index],
            message: 'is listed twice; each address can have only one listener',
          });
        }
        seen.add(text);
      });
    }
  });

/** What a user may write: the YAML file's shape, and the merged flags/env/file object before parsing. */
export type RawConfig = z.input<typeof configSchema>;
/** The schema's output: durations in ms, addresses parsed; load.ts maps it onto the runtime Config. */
export type ParsedConfig = z.output<typeof configSchema>;

type ConfigShape = z.output<z.ZodObject<typeof configSchema.shape>>;

/** One form of backend, and every name a route uses is a configured backend. */
function checkBackendsAndRoutes(config: ConfigShape, ctx: z.RefinementCtx): void {
  if (config.backend !== undefined && config.backends !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['backends'], message: 'is set together with backend; give one backend with backend (and backend_*), or name them all in backends', params: { severalKeys: true } });
    return;
  }
  if (config.backend === undefined && config.backends === undefined) {
    ctx.addIssue({ code: 'custom', path: ['backend'], message: 'is required; set it in the config file, with --backend, or with POPWARDEN_BACKEND (or name several backends in backends)', params: { severalKeys: true } });
    return;
  }
  for (const [name, entry] of Object.entries(config.backends ?? {})) {
    if (entry.source_address !== undefined && entry.address.kind !== 'tcp') {
      ctx.addIssue({ code: 'custom', path: ['backends', name, 'source_address'], message: `applies only to a HOST:PORT backend, not to ${entry.address.kind}:` });
    }
  }
  const names = new Set(config.backends === undefined ? ['default'] : Object.keys(config.backends));
  const known = (name: string | undefined): boolean => name === undefined || names.has(name);
  const unknown = (name: string): string => `names no configured backend "${name}"; configured: ${[...names].join(', ')}`;
  const routing = config.routing;
  routing.routes.forEach((route, index) => {
    if (!known(route.backend)) ctx.addIssue({ code: 'custom', path: ['routing', 'routes', index, 'backend'], message: unknown(route.backend) });
  });
  if (!known(routing.default)) ctx.addIssue({ code: 'custom', path: ['routing', 'default'], message: unknown(routing.default ?? '') });
  const template = routing.auth_http?.unlisted_backend_template;
  if (!known(template)) ctx.addIssue({ code: 'custom', path: ['routing', 'auth_http', 'unlisted_backend_template'], message: unknown(template ?? '') });
  if (routing.redis_key !== undefined && config.redis.url === undefined && config.redis.sentinels === undefined && config.redis.cluster === undefined) {
    ctx.addIssue({ code: 'custom', path: ['routing', 'redis_key'], message: 'needs a Redis: set redis.url (or sentinels, or cluster)' });
  }
}
