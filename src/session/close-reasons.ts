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
