import { Credentials } from '../../auth/credentials.js';
import { MAX_CREDENTIAL_FIELD_OCTETS } from '../../config/limits.js';
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
export function stls(command: Command, context: SessionContext): Outcome {
  if (command.rest !== '') return invalid(Reply.badSyntax);
  if (context.secure || context.listenerKind !== 'stls') return reply(Reply.alreadyTls);
  return upgradeTls;
}

/**
 * USER always answers +OK and contacts nobody: answering -ERR for unknown names would tell an
 * attacker which accounts exist (RFC 1939 §13, A-05).
 */
export function user(command: Command, context: SessionContext): Outcome {
  const name = command.rest;
  if (name === '' || name.length > MAX_CREDENTIAL_FIELD_OCTETS) return invalid(Reply.badCredentialSyntax);
  return awaitPass(name);
}

/** PASS completes a USER/PASS login; the password keeps its spaces (RFC 1939 §7). */
export function pass(command: Command, context: SessionContext, rawLine: Buffer): Outcome {
  const name = context.pendingUser;
  // "PASS " is five octets; everything after it is the password, byte for byte.
  const password = rawLine.subarray(5);
  try {
    if (name === undefined) return invalid(Reply.passWithoutUser);
    if (command.rest === '' || password.length > MAX_CREDENTIAL_FIELD_OCTETS) return invalid(Reply.badCredentialSyntax);
    return logIn(new Credentials(name, password), 'user');
  } finally {
    password.fill(0);
  }
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
