import type { CloseReason } from './states.js';

/**
 * What a command handler decided. Handlers never write "+OK"/"-ERR" themselves for ordinary
 * replies; the session renders the outcome in one place (popa3d's POP_* outcomes).
 */
export type Outcome =
  /** Send this one line. */
  | { readonly kind: 'reply'; readonly text: string }
  /** The handler already wrote everything (multi-line replies, the relay, STLS). */
  | { readonly kind: 'replied' }
  /** A bad command: send this -ERR and count it against the invalid-command budget. */
  | { readonly kind: 'invalid'; readonly text: string }
  /** End the session, after an optional last line. */
  | { readonly kind: 'close'; readonly reason: CloseReason; readonly text?: string };

export const reply = (text: string): Outcome => ({ kind: 'reply', text });
export const invalid = (text: string): Outcome => ({ kind: 'invalid', text });
export const replied: Outcome = { kind: 'replied' };
export const closeSession = (reason: CloseReason, text?: string): Outcome =>
  text === undefined ? { kind: 'close', reason } : { kind: 'close', reason, text };
