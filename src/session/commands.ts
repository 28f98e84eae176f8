import type { Command } from '../pop3/grammar.js';
import type { SessionContext } from './context.js';
import type { Outcome } from './outcome.js';
import { apop, capa, pass, quit, stls, user } from './handlers/authorization.js';
import { auth } from './handlers/sasl.js';
import { relayCommand } from '../relay/relay.js';

export type CommandHandler = (command: Command, context: SessionContext, rawLine: Buffer) => Promise<Outcome> | Outcome;

export interface CommandSpec {
  /**
   * Refused with "-ERR [AUTH] TLS required" before TLS, without running the handler: no
   * credential is read, nothing reaches a backend (RFC 2595 §2.3, RFC 8314, R-11).
   */
  readonly tlsRequired: boolean;
  /** PASS: reads the USER given before it, and uses it up whatever its outcome (RFC 1939 §7). */
  readonly usesPendingUser?: true;
  readonly handle: CommandHandler;
}

/** THE table for the AUTHORIZATION state. A verb missing here is an invalid command. */
export const AUTHORIZATION_COMMANDS: Readonly<Record<string, CommandSpec>> = {
  CAPA: { tlsRequired: false, handle: capa },
  STLS: { tlsRequired: false, handle: stls },
  QUIT: { tlsRequired: false, handle: quit },
  USER: { tlsRequired: true, handle: user },
  PASS: { tlsRequired: true, usesPendingUser: true, handle: pass },
  APOP: { tlsRequired: true, handle: apop },
  AUTH: { tlsRequired: true, handle: auth },
};

/**
 * In TRANSACTION every verb goes to the relay, which refuses the authentication verbs and
 * forwards the rest, including extensions popwarden does not know (qpopper's XTND, LAST).
 */
export const TRANSACTION_COMMAND: CommandSpec = { tlsRequired: true, handle: relayCommand };
