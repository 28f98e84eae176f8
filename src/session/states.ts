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

export type { CloseReason } from './close-reasons.js';
