import { isMessageNumber, type Command } from '../pop3/grammar.js';
import type { BackendCapabilities } from '../pop3/capabilities.js';
import { MAX_RFC1939_COMMAND_LINE_OCTETS } from '../config/limits.js';

/**
 * Commands that belong to popwarden, not to the backend, once the client is logged in: they
 * would re-authenticate or renegotiate the link behind popwarden's back.
 */
export const REFUSED_AFTER_LOGIN: ReadonlySet<string> = new Set(['STLS', 'USER', 'PASS', 'APOP', 'AUTH']);

/**
 * Extensions whose exchange popwarden cannot frame, refused with one -ERR after login: qpopper's
 * XTND XMIT reads a whole message from the client after its +OK, and XTND XLIST answers with a
 * list. Relayed, either would leave the lines of one side taken for commands or replies.
 */
export const UNFRAMEABLE_EXTENSIONS: ReadonlySet<string> = new Set(['XTND']);

/** The argument shapes of the TRANSACTION commands popwarden knows. */
type ArgumentRule = 'none' | 'message' | 'optional-message' | 'message-and-lines';

export interface TransactionRule {
  readonly args: ArgumentRule;
  /** The -ERR a malformed command gets; fixed text, never the client's bytes. */
  readonly refusal: string;
}

const rule = (args: ArgumentRule, usage: string): TransactionRule => ({ args, refusal: `-ERR Syntax error: ${usage}` });

/**
 * What popwarden checks itself before relaying a TRANSACTION command (RFC 1939 §5 and §7, RFC
 * 1725 for LAST, RFC 2449 for CAPA). The reply's framing follows from the command, so a command
 * the backend might read differently from popwarden must never reach it: solid-pop3d and Courier
 * answer `RETR 1 2` with the whole message, where popwarden would have framed one line and lost
 * the session. A malformed command is answered here and the session goes on. Verbs missing from
 * this table (XTND and other extensions) are relayed as they are and framed as one line (D-06).
 */
export const TRANSACTION_RULES: Readonly<Record<string, TransactionRule>> = {
  STAT: rule('none', 'STAT takes no arguments'),
  LIST: rule('optional-message', 'LIST takes an optional message number'),
  RETR: rule('message', 'RETR takes one message number'),
  DELE: rule('message', 'DELE takes one message number'),
  NOOP: rule('none', 'NOOP takes no arguments'),
  RSET: rule('none', 'RSET takes no arguments'),
  QUIT: rule('none', 'QUIT takes no arguments'),
  TOP: rule('message-and-lines', 'TOP takes a message number and a number of lines'),
  UIDL: rule('optional-message', 'UIDL takes an optional message number'),
  LAST: rule('none', 'LAST takes no arguments'),
  CAPA: rule('none', 'CAPA takes no arguments'),
};

/** A line count for TOP: 0..2^31-1, digits only (RFC 1939 §7: "a non-negative number"). */
function isLineCount(token: string): boolean {
  return token === '0' || isMessageNumber(token);
}

/** Whether a command's arguments have the shape its rule asks for. */
export function argumentsFit(args: readonly string[], shape: ArgumentRule): boolean {
  switch (shape) {
    case 'none':
      return args.length === 0;
    case 'message':
      return args.length === 1 && isMessageNumber(args[0]!);
    case 'optional-message':
      return args.length === 0 || (args.length === 1 && isMessageNumber(args[0]!));
    case 'message-and-lines':
      return args.length === 2 && isMessageNumber(args[0]!) && isLineCount(args[1]!);
  }
}

/** What the relay does with a TRANSACTION command line. */
export type RelayPlan =
  /** Refuse it here, with this -ERR, without the backend seeing it. */
  | { readonly kind: 'refuse'; readonly text: string }
  /** Send this line to the backend. */
  | { readonly kind: 'relay'; readonly line: Buffer };

/**
 * The line a checked TRANSACTION command goes out as. A known command goes out rebuilt from its
 * parsed tokens (upper-case verb, single spaces, no trailing space), so the backend reads exactly
 * what popwarden framed the reply for; an unknown extension goes out as the client wrote it.
 */
export function relayLine(command: Command, rawLine: Buffer): Buffer {
  if (TRANSACTION_RULES[command.verb] === undefined || isCanonical(command, rawLine)) return rawLine;
  return Buffer.from([command.verb, ...command.args].join(' '), 'latin1');
}

const UPPER_A = 0x41;
const UPPER_Z = 0x5a;

/**
 * Whether `rawLine` already is the canonical form of `command` (what clients nearly always
 * send), so that it can go out as it came, with nothing built per command (issue 10.4). The
 * arguments are `rest` split on spaces without empty tokens, so the lengths agree exactly when
 * single spaces separate the tokens, with none before or after; the verb must be upper-case.
 */
function isCanonical(command: Command, rawLine: Buffer): boolean {
  let length = command.verb.length;
  for (const arg of command.args) length += 1 + arg.length;
  if (rawLine.length !== length) return false;
  for (let i = 0; i < command.verb.length; i++) {
    const byte = rawLine[i]!;
    if (byte < UPPER_A || byte > UPPER_Z) return false;
  }
  return true;
}

/**
 * The whole policy for one TRANSACTION line, as the command table (which checks the arguments
 * against TRANSACTION_RULES) and the relay (which sends relayLine) apply it together.
 */
export function planRelay(command: Command, rawLine: Buffer): RelayPlan {
  const known = TRANSACTION_RULES[command.verb];
  if (known !== undefined && !argumentsFit(command.args, known.args)) return { kind: 'refuse', text: known.refusal };
  return { kind: 'relay', line: relayLine(command, rawLine) };
}

/**
 * Whether the backend reads `line` (without its CRLF) as one command. Known commands go out
 * rebuilt and short (at most 25 octets: `TOP 2147483647 2147483647`); an extension goes out as typed, and a backend that
 * predates CAPA may split a line over 47 octets and answer each piece, one reply too many.
 */
export function fitsBackendLine(line: Buffer, capabilities: BackendCapabilities): boolean {
  return capabilities.known || line.length + 2 <= MAX_RFC1939_COMMAND_LINE_OCTETS;
}

/**
 * Whether a +OK reply to this command is multi-line (RFC 1939 §5, RFC 2449 §5, RFC 6856 §3). Everything else,
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
    case 'LANG': // RFC 6856 §3: without an argument, the list of languages
      return command.args.length === 0;
    default:
      return false;
  }
}
