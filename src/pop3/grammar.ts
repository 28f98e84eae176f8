/**
 * POP3 command and response syntax (RFC 1939 §3, RFC 2449 §8). Command lines are handled as
 * latin1 strings so every byte maps to one character and back: usernames reach the backend
 * exactly as the client typed them, whatever their encoding.
 */
import { hasControlBytes } from './control-bytes.js';

export interface Command {
  /** Upper-cased keyword (keywords are case-insensitive, RFC 1939 §3). */
  readonly verb: string;
  /** Everything after the first space, spaces kept (RFC 1939 §7 PASS note); '' when absent. */
  readonly rest: string;
  /** `rest` split on single spaces, for commands whose arguments are tokens. */
  readonly args: readonly string[];
}

const KEYWORD = /^[A-Za-z]{1,40}$/;

/** Parses a command line (without CRLF); undefined for anything that is not a keyword line. */
export function parseCommand(line: Buffer): Command | undefined {
  if (hasControlBytes(line)) return undefined;
  const text = line.toString('latin1');
  const space = text.indexOf(' ');
  const keyword = space === -1 ? text : text.slice(0, space);
  if (!KEYWORD.test(keyword)) return undefined;
  const rest = space === -1 ? '' : text.slice(space + 1);
  // Empty tokens (a trailing or doubled space) are not arguments: "RETR 1 " is still RETR with
  // one argument, so its reply is framed as the multi-line reply the backend will send.
  return { verb: keyword.toUpperCase(), rest, args: argumentsOf(rest) };
}

/** The arguments of a command that has none (NOOP, STAT, LIST...): one array for all of them. */
const NO_ARGUMENTS: readonly string[] = Object.freeze([]);

/**
 * `rest` split on spaces, empty tokens left out. No arguments and one (RETR 1, DELE 1), what
 * nearly every command has, are told apart first: String#split costs several times the rest of
 * the parse (issue 10).
 */
function argumentsOf(rest: string): readonly string[] {
  if (rest === '') return NO_ARGUMENTS;
  if (!rest.includes(' ')) return [rest];
  return rest.split(' ').filter((token) => token !== '');
}

/** A strict message number: 1..2^31-1, digits only, so "LIST 4294967297" cannot wrap to 1. */
export function isMessageNumber(token: string): boolean {
  return /^[1-9][0-9]{0,9}$/.test(token) && Number(token) <= 0x7fffffff;
}

/** A status line from a server, split into its parts. */
export interface StatusLine {
  readonly ok: boolean;
  /** The RFC 2449 response code in brackets, upper-cased, e.g. "IN-USE" or "SYS/TEMP". */
  readonly code: string | undefined;
  /** Text after the status indicator (and after the code, if any). */
  readonly text: string;
}

const RESPONSE_CODE = /^\[([A-Za-z0-9/-]{1,40})\]\s?/;

const PLUS_OK = Buffer.from('+OK', 'latin1');
const MINUS_ERR = Buffer.from('-ERR', 'latin1');
const SPACE = 0x20;

/**
 * Whether a status line is "+OK ..." (true) or "-ERR ..." (false); undefined for anything else.
 * What the relay needs of every reply, read from the bytes with no string made.
 */
export function statusIndicator(line: Buffer): boolean | undefined {
  if (startsWithWord(line, PLUS_OK)) return true;
  if (startsWithWord(line, MINUS_ERR)) return false;
  return undefined;
}

/**
 * `line` is `word`, or begins with `word` and a space. Compared byte by byte: Buffer#compare on
 * a range validates its five arguments and calls into C++, many times the cost of four bytes.
 */
function startsWithWord(line: Buffer, word: Buffer): boolean {
  if (line.length < word.length || (line.length > word.length && line[word.length] !== SPACE)) return false;
  for (let i = 0; i < word.length; i++) {
    if (line[i] !== word[i]) return false;
  }
  return true;
}

/** Parses "+OK ..." or "-ERR ..."; undefined for anything else (a protocol violation). */
export function parseStatusLine(line: Buffer): StatusLine | undefined {
  const ok = statusIndicator(line);
  if (ok === undefined) return undefined;
  // Past "+OK " or "-ERR " (empty when the line is the indicator alone).
  const rest = line.toString('latin1', ok ? PLUS_OK.length + 1 : MINUS_ERR.length + 1);
  const code = RESPONSE_CODE.exec(rest);
  if (code === null) return { ok, code: undefined, text: rest };
  return { ok, code: code[1]!.toUpperCase(), text: rest.slice(code[0].length) };
}
