import { Credentials, isAcceptablePassword, isAcceptableUsername } from '../../auth/credentials.js';
import { decodeBase64Strict } from '../../auth/base64.js';
import { parsePlainMessage } from '../../auth/sasl-plain.js';
import { CLIENT_SASL_MECHANISMS } from '../../pop3/capabilities.js';
import type { Command } from '../../pop3/grammar.js';
import { Reply } from '../../pop3/replies.js';
import type { SessionContext } from '../context.js';
import { close, invalid, logIn, replied, reply, type Outcome } from '../outcome.js';

const MECHANISM_LIST = Buffer.from(`+OK\r\n${CLIENT_SASL_MECHANISMS.map((m) => `${m}\r\n`).join('')}.\r\n`, 'latin1');

/**
 * AUTH (RFC 5034): PLAIN and LOGIN, with or without an initial response, "*" to cancel, and
 * plain `AUTH` listing the mechanisms for clients that predate CAPA. The exchange is a short
 * linear script: it pulls its continuation lines straight from the client.
 */
export async function auth(command: Command, context: SessionContext): Promise<Outcome> {
  // The command table has refused more than a mechanism and an initial response.
  const [mechanism, initialResponse] = command.args;
  if (mechanism === undefined) {
    context.write(MECHANISM_LIST);
    return replied;
  }
  switch (mechanism.toUpperCase()) {
    case 'PLAIN':
      return authPlain(context, initialResponse);
    case 'LOGIN':
      return authLogin(context, initialResponse);
    default:
      return invalid(Reply.saslUnknownMechanism);
  }
}

async function authPlain(context: SessionContext, initialResponse: string | undefined): Promise<Outcome> {
  let response: Buffer | Outcome;
  if (initialResponse === undefined) response = await challenge(context, Reply.saslEmptyChallenge);
  // RFC 5034 §4: "=" is an initial response that is present but empty.
  else response = initialResponse === '=' ? Buffer.alloc(0) : decodeOrRefuse(initialResponse);
  if (!Buffer.isBuffer(response)) return response;
  try {
    const message = parsePlainMessage(response);
    switch (message.kind) {
      case 'malformed':
        return invalid(Reply.saslMalformed);
      case 'authzid-refused':
        // Acting as another user is never allowed; the backend never hears of it (R-13).
        return reply(Reply.authzidRefused);
      case 'ok':
        return logIn(new Credentials(message.user, message.password), 'plain');
    }
  } finally {
    response.fill(0);
  }
}

async function authLogin(context: SessionContext, initialResponse: string | undefined): Promise<Outcome> {
  const userBytes =
    initialResponse === undefined ? await challenge(context, Reply.loginUsernamePrompt) : decodeOrRefuse(initialResponse);
  if (!Buffer.isBuffer(userBytes)) return userBytes;
  if (!isAcceptableUsername(userBytes)) return invalid(Reply.saslMalformed);
  const password = await challenge(context, Reply.loginPasswordPrompt);
  if (!Buffer.isBuffer(password)) return password;
  try {
    if (!isAcceptablePassword(password)) return invalid(Reply.saslMalformed);
    return logIn(new Credentials(userBytes.toString('latin1'), password), 'login');
  } finally {
    password.fill(0);
  }
}

/** Sends one server challenge (a "+ " line) and returns the client's decoded answer. */
async function challenge(context: SessionContext, prompt: string): Promise<Buffer | Outcome> {
  context.write(Buffer.from(`${prompt}\r\n`, 'latin1'));
  return readResponse(context);
}

/** Reads one continuation line and decodes it; "*" cancels (RFC 5034 §4). Wipes the raw line. */
async function readResponse(context: SessionContext): Promise<Buffer | Outcome> {
  const line = await context.readContinuation();
  if (line === 'closed') return replied;
  if (line === 'too-long') return close('line-too-long', Reply.lineTooLong);
  try {
    const text = line.toString('latin1');
    if (text === '*') return invalid(Reply.authCancelled);
    return decodeOrRefuse(text);
  } finally {
    line.fill(0);
  }
}

function decodeOrRefuse(text: string): Buffer | Outcome {
  return decodeBase64Strict(text) ?? invalid(Reply.saslMalformed);
}
