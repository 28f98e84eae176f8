import { Credentials } from '../../auth/credentials.js';
import type { Command } from '../../pop3/grammar.js';
import { preLoginCapabilities } from '../../pop3/capabilities.js';
import { Reply } from '../../pop3/replies.js';
import type { SessionContext } from '../context.js';
import { awaitPass, close, invalid, logIn, replied, reply, upgradeTls, type Outcome } from '../outcome.js';

/** CAPA before login: popwarden's own list, which depends only on whether TLS is active. */
export function capa(_command: Command, context: SessionContext): Outcome {
  context.write(preLoginCapabilities(context.secure));
  return replied;
}

/** STLS (RFC 2595 §4): only on a plaintext listener, only once, only before login. */
export function stls(_command: Command, context: SessionContext): Outcome {
  if (context.secure || context.listenerKind !== 'stls') return reply(Reply.alreadyTls);
  return upgradeTls;
}

/**
 * USER always answers +OK and contacts nobody: answering -ERR for unknown names would tell an
 * attacker which accounts exist (RFC 1939 §13, A-05).
 */
export function user(command: Command): Outcome {
  return awaitPass(command.rest);
}

/**
 * PASS completes a USER/PASS login; the password keeps its spaces (RFC 1939 §7). The command
 * table has checked the pending USER and the password's length; the session wipes the line.
 */
export function pass(_command: Command, context: SessionContext, rawLine: Buffer): Outcome {
  const name = context.pendingUser;
  if (name === undefined) throw new Error('PASS without a pending USER got past the command table');
  // "PASS " is five octets; everything after it is the password, byte for byte.
  return logIn(new Credentials(name, rawLine.subarray(5)), 'user');
}

/**
 * APOP needs the cleartext password on popwarden's side to check the digest, and popwarden has
 * none: it is a proxy. No greeting of popwarden's carries a timestamp (S-07).
 */
export function apop(_command: Command, _context: SessionContext): Outcome {
  return invalid(Reply.apopUnsupported);
}

/** QUIT before login: nothing to update, just leave (RFC 1939 §4). */
export function quit(_command: Command, _context: SessionContext): Outcome {
  return close('quit', Reply.bye);
}
