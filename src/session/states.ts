/**
 * The states of a client session. Every change goes through Session#enterState, which logs it.
 *
 * AUTHORIZATION  waiting for credentials (RFC 1939 §4); before TLS only CAPA, STLS and QUIT work
 * UPGRADING      STLS accepted, TLS handshake running; nothing is read in clear any more
 * AUTHENTICATING credentials complete, backend login running; pipelined commands wait
 * TRANSACTION    logged in; commands are relayed to the backend (RFC 1939 §5)
 * CLOSED         both sockets are gone or going
 */
export const SessionState = {
  authorization: 'AUTHORIZATION',
  upgrading: 'UPGRADING',
  authenticating: 'AUTHENTICATING',
  transaction: 'TRANSACTION',
  closed: 'CLOSED',
} as const;
export type SessionState = (typeof SessionState)[keyof typeof SessionState];

/** Why a session ended; logged with every close (and a metrics label later, so keep it bounded). */
export type CloseReason =
  | 'quit'
  | 'client-closed'
  | 'client-error'
  | 'client-write-stall'
  | 'pre-auth-timeout'
  | 'idle-timeout'
  | 'tls-handshake-failed'
  | 'tls-on-plaintext-port'
  | 'http-on-pop3-port'
  | 'line-too-long'
  | 'too-many-invalid-commands'
  | 'backend-closed'
  | 'backend-protocol-error'
  | 'backend-timeout'
  | 'server-shutdown';
