/**
 * The validated, normalised configuration every other module reads. It is produced once by
 * config/load.ts (flags > environment > YAML file > defaults), frozen, and never re-parsed.
 * Durations are milliseconds here; the user writes them with units ("2s", "10m"). Every default is
 * already applied (the schema's, and those from the environment): a field is `undefined` only
 * where undefined means something ("no CA file: the bundled list"), never "the default".
 */
import type { TlsVersion } from '../tls/policy.js';

/** How popwarden logs in to the backend. `auto` picks the strongest mechanism offered. */
export const BACKEND_AUTH_MODES = ['auto', 'apop', 'cram-md5', 'plain', 'login', 'user'] as const;
export type BackendAuthMode = (typeof BACKEND_AUTH_MODES)[number];

/**
 * How the backend link is protected. `auto`: STLS when CAPA offers it. `starttls`: STLS required.
 * `implicit`: TLS from the first byte (a POP3S port). `off`: never (a loopback backend).
 */
export const BACKEND_TLS_MODES = ['auto', 'off', 'starttls', 'implicit'] as const;
export type BackendTlsMode = (typeof BACKEND_TLS_MODES)[number];

/** Whether popwarden opens each backend connection with a PROXY protocol header, and which version. */
export const BACKEND_PROXY_PROTOCOL_MODES = ['off', 'v1', 'v2'] as const;
export type BackendProxyProtocolMode = (typeof BACKEND_PROXY_PROTOCOL_MODES)[number];

/** Whether popwarden tells the backend the client's address with XCLIENT when the backend offers it. */
export const BACKEND_XCLIENT_MODES = ['off', 'auto'] as const;
export type BackendXclientMode = (typeof BACKEND_XCLIENT_MODES)[number];

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** A parsed HOST:PORT. IPv6 hosts are stored without brackets. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** `tls`: implicit TLS (port 995 style). `stls`: plaintext that must be upgraded with STLS (port 110 style). */
export type ListenerKind = 'tls' | 'stls';

export interface ListenerConfig extends HostPort {
  readonly kind: ListenerKind;
  /** A short stable name for logs and metrics, e.g. "tls:0.0.0.0:995". */
  readonly name: string;
  /**
   * Set when every connection must begin with a PROXY protocol header from one of `trusted`
   * (CIDRs): the client address it carries replaces the socket's peer everywhere.
   */
  readonly proxyProtocol?: { readonly trusted: readonly string[] };
}

/**
 * A program popwarden runs for each backend session, inetd style: one connected socket as its
 * stdin and stdout. `command` is an absolute path, run without a shell.
 */
export interface ExecCommand {
  readonly command: string;
  readonly args: readonly string[];
  /** Added to the child's minimal environment (the client's address variables always win). */
  readonly environment: Readonly<Record<string, string>>;
  /** Working directory of the child; undefined: the filesystem root, as inetd runs its servers. */
  readonly cwd: string | undefined;
}

/**
 * Where the backend is: a TCP address, a UNIX-domain socket (a socket-activated legacy server),
 * or a program started for each session. Named backends (issue 13) reuse this union.
 */
export type BackendAddress =
  | ({ readonly kind: 'tcp' } & HostPort)
  | { readonly kind: 'unix'; readonly path: string }
  | ({ readonly kind: 'exec' } & ExecCommand);

export interface BackendConfig {
  readonly address: BackendAddress;
  /** Its configured name (`default` for `backend:`): what routes name, and its metric label. */
  readonly name: string;
  /** Configured under `backends:`, so its keys are backends.NAME.* (config/backend-keys.ts); false for `backend:` + backend_*. */
  readonly named: boolean;
  readonly auth: BackendAuthMode;
  readonly tls: BackendTlsMode;
  /** PEM file of CAs that sign the backend's STLS certificate. */
  readonly caFile: string | undefined;
  /** Accept any backend certificate (self-signed legacy hosts). Loudly logged. */
  readonly tlsInsecure: boolean;
  /** Name to verify in the backend certificate; defaults to the backend host. */
  readonly tlsServerName: string | undefined;
  /** Client certificate chain and key for backends that ask for one (PEM files). */
  readonly clientCertFile: string | undefined;
  readonly clientKeyFile: string | undefined;
  /** Allow PASS / AUTH PLAIN / AUTH LOGIN in clear to a backend that is not on a trusted local link. */
  readonly allowPlaintextAuth: boolean;
  /**
   * Treat a local backend as a secure link for plaintext mechanisms (the usual same-host
   * install, where nobody can sniff the link without already being root on the host):
   * undefined (the default) only where no other user can stand in for the server (a privileged
   * loopback port, a UNIX socket in directories only root or popwarden may write, a program
   * popwarden starts itself), true on any loopback port or socket, false never.
   */
  readonly trustLoopback: boolean | undefined;
  /** Local address to connect from (multi-homed gateways, and tests that need a non-loopback-looking source). */
  readonly sourceAddress: string | undefined;
  /** How often this backend is probed for backend_up and /readyz; 0 = never. */
  readonly probeIntervalMs: number;
  /** Drained: no new sessions go to it (its users get -ERR [SYS/TEMP]); live sessions finish. */
  readonly drain: boolean;
  /** The username this backend gets: `strip_domain` or a template (%u, %n, %d); undefined: as typed. */
  readonly rewrite: string | undefined;
  /** A PROXY header (v1 or v2) with the client's address first on every backend connection; `off`: none. */
  readonly proxyProtocol: BackendProxyProtocolMode;
  /** `auto`: send `XCLIENT ADDR=… PORT=…` before the login when the backend offers it (Dovecot: `[XCLIENT]` in its greeting). */
  readonly xclient: BackendXclientMode;
}

/** Which users a static route (or a map-file line) takes. `user` and `domain` are compared as route keys (routing/keys). */
export type RouteMatch =
  | { readonly kind: 'user'; readonly user: string }
  | { readonly kind: 'domain'; readonly domain: string }
  | { readonly kind: 'regex'; readonly source: string };

export interface StaticRoute {
  readonly match: RouteMatch;
  /** The name of a configured backend. */
  readonly backend: string;
  /** Overrides the backend's rewrite. */
  readonly rewrite: string | undefined;
}

/** nginx's auth_http protocol, used to ask an existing routing service where a user lives. */
export interface AuthHttpConfig {
  readonly url: string;
  readonly timeoutMs: number;
  /** Send Auth-Pass; off by default, so the service never sees a password. */
  readonly sendPassword: boolean;
  /** Settings for an answer naming an address no backend has; undefined: such answers are refused. */
  readonly unlistedBackendTemplate: string | undefined;
}

/** How a login's backend is chosen: the sources in this order, then `defaultBackend`. */
export interface RoutingConfig {
  readonly routes: readonly StaticRoute[];
  readonly mapFile: string | undefined;
  /** A Redis hash (in the redis: store) mapping users and `*@domain` to backend names. */
  readonly redisKey: string | undefined;
  readonly authHttp: AuthHttpConfig | undefined;
  /** Where users no source routes go; undefined: they fail like a wrong password. */
  readonly defaultBackend: string | undefined;
}

export interface TimeoutsConfig {
  /** Absolute deadline from connect to a completed login (slowloris defence). */
  readonly preAuthMs: number;
  /** Autologout after login; RFC 1939 §3 requires at least 10 minutes. */
  readonly idleMs: number;
  /** TLS handshake, on the implicit port and after STLS. */
  readonly tlsHandshakeMs: number;
  /** The whole PROXY protocol header on a listener that requires one. */
  readonly proxyProtocolMs: number;
  /** Connect to the backend (TCP, its UNIX socket), or start its program. */
  readonly backendConnectMs: number;
  /** Each step of the backend login script before the credentials (greeting, CAPA, STLS). */
  readonly backendStepMs: number;
  /** Each backend reply once the login has begun (challenges, verdict). */
  readonly backendAuthMs: number;
  /** Silence from the backend while a reply is outstanding after login. */
  readonly backendIdleMs: number;
  /** How long a client may leave our writes unread before it is dropped. */
  readonly clientWriteStallMs: number;
  /** SIGTERM drain: how long commands in flight may finish before sessions are closed. */
  readonly shutdownMs: number;
}

export interface LimitsConfig {
  /** Invalid commands tolerated before the connection is closed (nginx max_errors). */
  readonly maxInvalidCommands: number;
  /** Commands a connection may send before it has logged in; the next closes it. 0 = no bound. */
  readonly maxCommandsBeforeLogin: number;
  /** Concurrent sessions from one client address (IPv6: its /64); 0 = no bound. */
  readonly maxSessionsPerIp: number;
  /** New connections from one client address per second; 0 = no bound. */
  readonly maxNewConnectionsPerIp: number;
  /** New connections from one client address in any minute; 0 = no bound. */
  readonly maxNewConnectionsPerIpPerMinute: number;
  /** Sessions from one client address ended by a protocol error in any hour; 0 = no bound. */
  readonly maxProtocolErrorsPerIpPerHour: number;
  /** TLS handshakes in progress from one client address (implicit and STLS); 0 = no bound. */
  readonly maxHandshakesPerIp: number;
  /** Client connections open at once, the whole process; 0 = no bound. */
  readonly maxSessions: number;
  /** TLS handshakes in progress, the whole process; 0 = no bound. */
  readonly maxHandshakes: number;
  /** Backend programs (`exec:` backends) running at once; more logins get -ERR [SYS/TEMP]. */
  readonly maxBackendProcesses: number;
  /** Backend programs in their login from one client address (IPv6: its prefix); 0 = no bound. */
  readonly maxBackendLoginsPerIp: number;
}

/** What the failed-login guard does when its Redis store fails or is too slow. */
export const STORE_FAILURE_MODES = ['insurance', 'fail_closed'] as const;
export type StoreFailureMode = (typeof STORE_FAILURE_MODES)[number];

/** Where the shared rate-limit state lives. Exactly one of url, sentinels or cluster, or none (in-memory). */
export type RedisTarget =
  | { readonly kind: 'none' }
  | { readonly kind: 'url'; readonly url: string }
  | { readonly kind: 'sentinel'; readonly sentinels: readonly HostPort[]; readonly name: string }
  | { readonly kind: 'cluster'; readonly nodes: readonly HostPort[] };

export interface RedisConfig {
  readonly target: RedisTarget;
  /** Username for Sentinel/Cluster nodes (a URL carries its own). */
  readonly username: string | undefined;
  /** File holding the password for Sentinel/Cluster nodes (a URL carries its own). */
  readonly passwordFile: string | undefined;
  /** TLS to Sentinel/Cluster nodes (a URL says so with rediss://). */
  readonly tls: boolean;
  /** Every Redis command fails after this long; a hung Redis never holds a login longer. */
  readonly commandTimeoutMs: number;
  /** TCP connect (and reconnect) attempts give up after this long. */
  readonly connectTimeoutMs: number;
}

/** One failure counter: `maxFailures` within `windowMs` block the key for `blockMs`. */
export interface LimiterPolicy {
  readonly maxFailures: number;
  readonly windowMs: number;
  readonly blockMs: number;
}

/** How the backend reduces a typed username to an account; every limit is keyed on the result. */
export interface UsernameCanonical {
  /** Lower-case the name: the backend's logins are not case-sensitive. */
  readonly lowerCase: boolean;
  /** The name ends at the first of these characters ("" keeps realms). */
  readonly realmSeparators: string;
  /** Instead of realmSeparators: the account is this expression's one capture group. */
  readonly pattern: string | undefined;
}

export interface RateLimitConfig {
  /** Prefix of every store key, so several deployments can share one Redis. */
  readonly keyPrefix: string;
  /** Trimmed, then as configured: so Alice, alice@x and alice%x share alice's counters. */
  readonly usernameCanonical: UsernameCanonical;
  /** IPv6 clients are keyed by this prefix length (one customer's whole /64). */
  readonly ipv6PrefixLength: number;
  readonly userIp: LimiterPolicy;
  readonly ip: LimiterPolicy;
  readonly user: LimiterPolicy;
  /** How long a successful login from an IP exempts that user+IP from the per-user limit. */
  readonly trustedPairMs: number;
  /** File with the HMAC key for failed-password fingerprints; undefined = generated in stateDir. */
  readonly hmacKeyFile: string | undefined;
  /** CIDRs never limited (also exempt from the per-IP connection bounds). */
  readonly allow: readonly string[];
  /** CIDRs refused at connect with -ERR [SYS/PERM]. */
  readonly deny: readonly string[];
  readonly onStoreFailure: StoreFailureMode;
}

/** TLS protocol versions an operator may name; below TLSv1.2 needs allowLegacyProtocols. Defined by the TLS policy. */
export { TLS_VERSIONS, type TlsVersion } from '../tls/policy.js';

/** One SNI certificate: served to clients that ask for one of `names` (exact, or `*.domain` for one label). */
export interface SniCertificateConfig {
  readonly names: readonly string[];
  readonly certFile: string;
  readonly keyFile: string;
}

/** The certificates and policy clients see. */
export interface TlsConfig {
  /** PEM certificate chain; undefined (and no pfxFile) means "generate a self-signed pair in stateDir". */
  readonly certFile: string | undefined;
  readonly keyFile: string | undefined;
  /** PKCS#12 bundle instead of certFile/keyFile (legacy RC2-40 files are converted in memory). */
  readonly pfxFile: string | undefined;
  /** File holding the PKCS#12 passphrase; undefined = empty passphrase. */
  readonly pfxPassphraseFile: string | undefined;
  /** SNI certificates; the default (certFile/keyFile, pfx or self-signed) serves every other name. */
  readonly certificates: readonly SniCertificateConfig[];
  /** Names clients use to reach popwarden, checked by --check-config against the default certificate. */
  readonly serverNames: readonly string[];
  /** Reload when a certificate or key file changes (besides SIGHUP). */
  readonly watchFiles: boolean;
  /** The lowest protocol version offered to clients. */
  readonly minVersion: TlsVersion;
  /** Must be true for minVersion TLSv1 or TLSv1.1. */
  readonly allowLegacyProtocols: boolean;
  /** OpenSSL cipher string for TLS 1.2 and below. */
  readonly ciphers: string;
  /** Key-exchange groups, colon separated (Node's ecdhCurve). */
  readonly groups: string;
  /** 48-byte session ticket key file, shared by instances; created (0600) if absent. undefined: random keys per start and reload. */
  readonly ticketKeysFile: string | undefined;
}

export interface MetricsConfig {
  /** Where /metrics, /healthz and /readyz are served; undefined when switched off. */
  readonly listen: HostPort | undefined;
  /** How often the backend is probed for the backend-up metric; 0 = never. */
  readonly backendProbeIntervalMs: number;
}

// Shaped like TlsConfig's field list (duplicates pairs them), but no field is shared: nothing to factor out.
export interface Config {
  readonly listeners: readonly ListenerConfig[];
  /** Every configured backend, by name; never empty (`backend:` alone is one named `default`). */
  readonly backends: readonly BackendConfig[];
  readonly routing: RoutingConfig;
  readonly tls: TlsConfig;
  /** Where the first-run self-signed certificate lives. */
  readonly stateDir: string;
  /** Text of popwarden's own greeting (never the backend's banner). */
  readonly greeting: string;
  /** Failed-login replies are sent no earlier than this after the credentials arrived. */
  readonly authFailureDelayMs: number;
  readonly timeouts: TimeoutsConfig;
  readonly limits: LimitsConfig;
  readonly logLevel: LogLevel;
  readonly metrics: MetricsConfig;
  readonly redis: RedisConfig;
  readonly rateLimit: RateLimitConfig;
}
