import type { Credentials } from '../auth/credentials.js';
import type { BackendSession } from '../backend/login.js';
import type { ClientMechanism } from './context.js';
import type { CloseReason } from './states.js';

/**
 * What a command handler decided. Handlers never write "+OK"/"-ERR" themselves for ordinary
 * replies and never change the session: the session renders the outcome in one place, and that
 * is the only code that changes its state, its socket or its timers (popa3d's POP_* outcomes,
 * OpenSMTPD's single smtp_enter_state).
 */
export type Outcome =
  /** Send this one line. */
  | { readonly kind: 'reply'; readonly text: string }
  /** The handler already wrote everything (multi-line replies, the relay). */
  | { readonly kind: 'replied' }
  /** A bad command: send this -ERR and count it against the invalid-command budget. */
  | { readonly kind: 'invalid'; readonly text: string }
  /** End the session, after an optional last line. */
  | { readonly kind: 'close'; readonly reason: CloseReason; readonly text?: string }
  /** STLS accepted: discard everything read in clear, answer +OK, run the handshake. */
  | { readonly kind: 'upgradeTls' }
  /** USER accepted: keep the name for the PASS that completes it, answer +OK. */
  | { readonly kind: 'awaitPass'; readonly user: string }
  /** Credentials complete: log in to the backend (the session wipes them afterwards). */
  | { readonly kind: 'logIn'; readonly credentials: Credentials; readonly mechanism: ClientMechanism }
  /** The backend accepted the login of `user` (as the client spelled it): relay from now on. */
  | { readonly kind: 'authenticated'; readonly backend: BackendSession; readonly user: string };

export const reply = (text: string): Outcome => ({ kind: 'reply', text });
export const invalid = (text: string): Outcome => ({ kind: 'invalid', text });
export const replied: Outcome = { kind: 'replied' };
export const close = (reason: CloseReason, text?: string): Outcome =>
  text === undefined ? { kind: 'close', reason } : { kind: 'close', reason, text };
export const upgradeTls: Outcome = { kind: 'upgradeTls' };
export const awaitPass = (user: string): Outcome => ({ kind: 'awaitPass', user });
export const logIn = (credentials: Credentials, mechanism: ClientMechanism): Outcome => ({ kind: 'logIn', credentials, mechanism });
export const authenticated = (backend: BackendSession, user: string): Outcome => ({ kind: 'authenticated', backend, user });
