import type { Command } from '../pop3/grammar.js';
import { Reply } from '../pop3/replies.js';
import { MAX_CREDENTIAL_FIELD_OCTETS } from '../config/limits.js';
import type { SessionContext } from './context.js';
import { invalid, reply, type Outcome } from './outcome.js';
import { apop, capa, pass, quit, stls, user } from './handlers/authorization.js';
import { auth } from './handlers/sasl.js';
import { relayCommand } from '../relay/relay.js';
import { argumentsFit, REFUSED_AFTER_LOGIN, TRANSACTION_RULES, UNFRAMEABLE_EXTENSIONS } from '../relay/policy.js';

export type CommandHandler = (command: Command, context: SessionContext, rawLine: Buffer) => Promise<Outcome> | Outcome;

/** An argument check the session runs before the handler (OpenSMTPD's smtp_check_*). */
export interface ArgumentCheck {
  readonly fits: (command: Command, rawLine: Buffer) => boolean;
  /** The -ERR a misfit gets, counted as an invalid command; fixed text, never the client's bytes. */
  readonly refusal: string;
}

/**
 * One verb in one state: what the session checks before running it (in this order: TLS, the
 * pending USER, the arguments), and the handler that does it (OpenSMTPD's check/proceed split).
 * A verb missing from a state's table is an invalid command in that state.
 */
export interface CommandSpec {
  /**
   * Refused with "-ERR [AUTH] TLS required" before TLS, without running the handler: no
   * credential is read, nothing reaches a backend (RFC 2595 §2.3, RFC 8314, R-11).
   */
  readonly tlsRequired: boolean;
  /** PASS: needs the USER given before it, and uses it up whatever its outcome (RFC 1939 §7). */
  readonly usesPendingUser?: true;
  readonly args?: ArgumentCheck;
  /** The line carries a secret: the session wipes it once the command is served, whatever its outcome. */
  readonly secret?: true;
  readonly handle: CommandHandler;
}

/** What the session knows about itself when it checks a command. */
export interface CommandSituation {
  readonly secure: boolean;
  readonly pendingUser: string | undefined;
}

/**
 * Runs the checks a spec declares, in order, without side effects: the refusal to send, or
 * undefined when the handler may run.
 */
export function checkCommand(spec: CommandSpec, command: Command, rawLine: Buffer, situation: CommandSituation): Outcome | undefined {
  if (spec.tlsRequired && !situation.secure) return reply(Reply.tlsRequired);
  if (spec.usesPendingUser === true && situation.pendingUser === undefined) return invalid(Reply.passWithoutUser);
  if (spec.args !== undefined && !spec.args.fits(command, rawLine)) return invalid(spec.args.refusal);
  return undefined;
}

const noArguments: ArgumentCheck = { fits: (command) => command.rest === '', refusal: Reply.badSyntax };

/** A USER name or a PASS password: present, and within the bound popwarden forwards (RFC 1939 §7). */
const credentialField = (field: (command: Command, rawLine: Buffer) => { length: number }): ArgumentCheck => ({
  fits: (command, rawLine) => command.rest !== '' && field(command, rawLine).length <= MAX_CREDENTIAL_FIELD_OCTETS,
  refusal: Reply.badCredentialSyntax,
});

/** THE table for the AUTHORIZATION state. */
export const AUTHORIZATION_COMMANDS: Readonly<Record<string, CommandSpec>> = {
  CAPA: { tlsRequired: false, handle: capa },
  STLS: { tlsRequired: false, args: noArguments, handle: stls },
  QUIT: { tlsRequired: false, handle: quit },
  USER: { tlsRequired: true, args: credentialField((command) => command.rest), handle: user },
  // "PASS " is five octets; everything after it is the password, byte for byte, spaces kept.
  PASS: {
    tlsRequired: true,
    usesPendingUser: true,
    args: credentialField((_command, rawLine) => rawLine.subarray(5)),
    secret: true,
    handle: pass,
  },
  APOP: { tlsRequired: true, handle: apop },
  // The initial response of AUTH PLAIN carries the password.
  AUTH: {
    tlsRequired: true,
    args: { fits: (command) => command.args.length <= 2, refusal: Reply.badSyntax },
    secret: true,
    handle: auth,
  },
};

const alreadyAuthenticated = (): Outcome => invalid(Reply.alreadyAuthenticated);

/**
 * THE table for the TRANSACTION state: what popwarden checks itself before relaying. The RFC 1939
 * commands have their arguments checked against TRANSACTION_RULES (a command the backend might
 * read differently from popwarden never reaches it); the authentication verbs belong to
 * popwarden and are refused, and so are the extensions popwarden cannot frame
 * (UNFRAMEABLE_EXTENSIONS). Verbs missing here go to TRANSACTION_EXTENSION.
 */
export const TRANSACTION_COMMANDS: Readonly<Record<string, CommandSpec>> = Object.fromEntries([
  ...Object.entries(TRANSACTION_RULES).map(([verb, rule]): [string, CommandSpec] => [
    verb,
    {
      tlsRequired: true,
      args: { fits: (command) => argumentsFit(command.args, rule.args), refusal: rule.refusal },
      handle: relayCommand,
    },
  ]),
  ...[...REFUSED_AFTER_LOGIN].map((verb): [string, CommandSpec] => [verb, { tlsRequired: true, handle: alreadyAuthenticated }]),
  // A command the client may send; popwarden just cannot relay it: answered, not counted as invalid.
  ...[...UNFRAMEABLE_EXTENSIONS].map((verb): [string, CommandSpec] => [verb, { tlsRequired: true, handle: () => reply(Reply.extensionUnavailable) }]),
]);

/**
 * Extensions popwarden does not know (qpopper's XTND and the like) are relayed as the client
 * wrote them, and their replies framed as one line (D-06).
 */
export const TRANSACTION_EXTENSION: CommandSpec = { tlsRequired: true, handle: relayCommand };
