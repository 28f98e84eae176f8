/**
 * Why a session ended: logged with every close and a metrics label, so the list is closed and
 * bounded. A module of its own, with no imports, so that observability can take its allow-list
 * from here without depending on the session.
 */
export const CLOSE_REASONS = [
  'quit',
  'client-closed',
  'client-error',
  'client-write-stall',
  'pre-auth-timeout',
  'idle-timeout',
  'tls-handshake-failed',
  'tls-on-plaintext-port',
  'http-on-pop3-port',
  'line-too-long',
  'too-many-invalid-commands',
  // limits.max_commands_before_login: a connection that talks and talks without logging in.
  'too-many-commands-before-login',
  'backend-closed',
  'backend-protocol-error',
  'backend-timeout',
  'server-shutdown',
  // limits.max_sessions was full and this was the oldest session not logged in (net/evict-oldest.ts).
  'evicted',
] as const;
export type CloseReason = (typeof CLOSE_REASONS)[number];

/**
 * The closes that say the client does not speak POP3 the way any client does: a line past the
 * bound (a 64 KiB SASL response), command after command refused or sent without logging in, or
 * another protocol on the port. limits.max_protocol_errors_per_ip_per_hour counts them per address.
 * Not timeouts, resets or failed logins, which a real client on a bad network or with a wrong
 * password meets, and which have bounds of their own.
 */
export const PROTOCOL_ERRORS: ReadonlySet<CloseReason> = new Set<CloseReason>([
  'line-too-long',
  'too-many-invalid-commands',
  'too-many-commands-before-login',
  'tls-on-plaintext-port',
  'http-on-pop3-port',
]);
