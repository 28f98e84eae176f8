import type { Command } from '../pop3/grammar.js';

/**
 * Commands that belong to popwarden, not to the backend, once the client is logged in: they
 * would re-authenticate or renegotiate the link behind popwarden's back.
 */
export const REFUSED_AFTER_LOGIN: ReadonlySet<string> = new Set(['STLS', 'USER', 'PASS', 'APOP', 'AUTH']);

/**
 * Whether a +OK reply to this command is multi-line (RFC 1939 §5, RFC 2449 §5). Everything else,
 * unknown extension verbs included, is framed as one line (D-06): guessing would let a body
 * desynchronise the session.
 */
export function hasMultilineReply(command: Command): boolean {
  switch (command.verb) {
    case 'RETR':
      return command.args.length === 1;
    case 'TOP':
      return command.args.length === 2;
    case 'LIST':
    case 'UIDL':
      return command.args.length === 0;
    case 'CAPA':
      return true;
    default:
      return false;
  }
}
