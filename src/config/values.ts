/**
 * Parsers for the value syntaxes the config uses: durations with units and HOST:PORT. They
 * return a problem text instead of throwing, so the schema can attach the key and the source
 * (file line, flag, env var) and the user gets one line that says what to fix.
 */
import { isIP } from 'node:net';
import { isAbsolute } from 'node:path';
import type { BackendAddress, HostPort } from './types.js';

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly problem: string };

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const fail = <T>(problem: string): Parsed<T> => ({ ok: false, problem });

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
type DurationUnit = keyof typeof UNIT_MS;

/**
 * setTimeout() stores its delay in a signed 32-bit int; anything longer fires after 1 ms with a
 * warning. A 30-day idle timeout would therefore disconnect everyone at once, so refuse it here.
 */
export const MAX_DURATION_MS = 2 ** 31 - 1;

const DURATION = /^(\d+)(ms|s|m|h|d)$/;

/**
 * The longest window a rate-limit key may live in the store (ten years): store TTLs are not
 * timers, so they may exceed MAX_DURATION_MS, but a typo like "9999999d" should still be caught.
 */
export const MAX_STORE_DURATION_MS = 3650 * 86_400_000;

/**
 * "500ms", "2s", "10m", "1h", "30d" to milliseconds, and a bare "0" (zero is zero in every unit, as
 * `--help` promises for "0 allowed" keys). Any other bare number is refused: the reader of a config
 * file cannot tell whether "600" meant seconds or milliseconds, and neither can we.
 * `maxMs` is MAX_DURATION_MS for anything that becomes a timer; store TTLs pass MAX_STORE_DURATION_MS.
 */
export function parseDuration(text: string, maxMs: number = MAX_DURATION_MS): Parsed<number> {
  if (text === '0') return ok(0);
  const match = DURATION.exec(text);
  if (match === null) {
    if (/^\d+(\.\d+)?$/.test(text)) return fail(`has no unit; write it with one, e.g. "${text}s" or "${text}ms"`);
    return fail('is not a duration; write a whole number with a unit: ms, s, m, h or d (e.g. 500ms, 2s, 10m, 1h, 30d)');
  }
  const ms = Number(match[1]) * UNIT_MS[match[2] as DurationUnit];
  if (ms > maxMs) {
    return fail(
      maxMs === MAX_DURATION_MS
        ? 'is longer than Node.js timers allow (about 24 days); use a shorter duration'
        : `is longer than ${formatDuration(maxMs)}; use a shorter duration`,
    );
  }
  return ok(ms);
}

/** The shortest exact spelling of a duration, so "--check-config" output reads like a hand-written file. */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    const size = UNIT_MS[unit];
    if (ms !== 0 && ms % size === 0) return `${ms / size}${unit}`;
  }
  return ms === 0 ? '0s' : `${ms}ms`;
}

export interface HostPortRules {
  /** Listeners may ask the kernel for any free port (tests do); a backend never can. */
  readonly allowPortZero: boolean;
}

/** RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens. */
const HOSTNAME_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

function checkHost(host: string): string | undefined {
  if (host === '') return 'has no host; write HOST:PORT, e.g. 0.0.0.0:995 or [::1]:995';
  if (isIP(host) === 4) return undefined;
  // All-numeric labels that are not a valid IPv4 address are a typo ("10.0.0.256"), not a name.
  if (/^[\d.]+$/.test(host)) return `has an invalid IPv4 address "${host}"`;
  if (host.length > 253 || !host.split('.').every((label) => HOSTNAME_LABEL.test(label))) {
    return `has an invalid host name "${host}"`;
  }
  return undefined;
}

function checkPort(text: string, rules: HostPortRules): Parsed<number> {
  const lowest = rules.allowPortZero ? 0 : 1;
  if (!/^\d{1,5}$/.test(text)) return fail(`has an invalid port "${text}"; use a number from ${lowest} to 65535`);
  const port = Number(text);
  if (port < lowest || port > 65535) return fail(`has port ${port}, out of range; use ${lowest} to 65535`);
  return ok(port);
}

/** "0.0.0.0:995", "[::1]:995", "localhost:110". IPv6 needs brackets, so a port can never be misread as a group. */
export function parseHostPort(text: string, rules: HostPortRules): Parsed<HostPort> {
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close === -1 || text[close + 1] !== ':') return fail('is not [IPV6]:PORT; write it like [::1]:995');
    host = text.slice(1, close);
    portText = text.slice(close + 2);
    if (isIP(host) !== 6) return fail(`has an invalid IPv6 address "${host}"`);
  } else {
    const colon = text.lastIndexOf(':');
    if (colon === -1) return fail(`has no port; write HOST:PORT, e.g. ${text || 'localhost'}:110`);
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(':')) return fail(`looks like a bare IPv6 address; put it in brackets, e.g. [${host}]:${portText}`);
    const problem = checkHost(host);
    if (problem !== undefined) return fail(problem);
  }
  const port = checkPort(portText, rules);
  return port.ok ? ok({ host, port: port.value }) : port;
}

/** The inverse of parseHostPort: brackets around IPv6 hosts. */
export function formatHostPort(hostPort: HostPort): string {
  return isIP(hostPort.host) === 6 ? `[${hostPort.host}]:${hostPort.port}` : `${hostPort.host}:${hostPort.port}`;
}

/**
 * The backend as one string: `HOST:PORT`, `unix:/run/ipop3d.sock`, or `exec:/usr/sbin/ipop3d -x`
 * (the command line split on whitespace, no shell: inetd's own rule). Paths must be absolute, so
 * what runs or is connected to never depends on the working directory or a PATH search.
 */
export function parseBackendAddress(text: string): Parsed<BackendAddress> {
  if (text.startsWith('unix:')) {
    const path = text.slice('unix:'.length);
    if (!isAbsolute(path)) return fail('has a relative socket path; write unix:/absolute/path.sock');
    return ok({ kind: 'unix', path });
  }
  if (text.startsWith('exec:')) {
    const [command = '', ...args] = text.slice('exec:'.length).trim().split(/\s+/);
    return execAddress(command, args, {}, undefined);
  }
  const hostPort = parseHostPort(text, { allowPortZero: false });
  if (!hostPort.ok) return fail(`${hostPort.problem}; or unix:/path.sock, or exec:/path/to/server [args]`);
  return ok({ kind: 'tcp', ...hostPort.value });
}

/** An exec: backend, checked: an absolute program path and no NUL anywhere (execve would refuse it). */
export function execAddress(
  command: string,
  args: readonly string[],
  environment: Readonly<Record<string, string>>,
  cwd: string | undefined,
): Parsed<BackendAddress> {
  if (command === '') return fail('names no program; write exec:/path/to/server [args]');
  if (!isAbsolute(command)) return fail(`runs "${command}", a relative path; give the program's absolute path`);
  const texts = [command, ...args, ...Object.values(environment), cwd ?? ''];
  if (texts.some((value) => value.includes('\0'))) return fail('contains a NUL character');
  return ok({ kind: 'exec', command, args, environment, cwd });
}

/** The backend as one string, for logs, the backend memory's key and probe lines. */
export function formatBackendAddress(address: BackendAddress): string {
  switch (address.kind) {
    case 'tcp':
      return formatHostPort(address);
    case 'unix':
      return `unix:${address.path}`;
    case 'exec':
      return ['exec:' + address.command, ...address.args].join(' ');
  }
}

/** A parsed CIDR block: `address` is an IPv4 or IPv6 address, `prefix` its length in bits. */
export interface Cidr {
  readonly address: string;
  readonly family: 'ipv4' | 'ipv6';
  readonly prefix: number;
}

/** "192.0.2.0/24", "2001:db8::/32", or a bare address (a /32 or /128). */
export function parseCidr(text: string): Parsed<Cidr> {
  const [address = '', prefixText, extra] = text.trim().split('/');
  if (extra !== undefined) return fail('is not a CIDR block; write ADDRESS/BITS, e.g. 192.0.2.0/24 or 2001:db8::/32');
  const version = isIP(address);
  if (version === 0) return fail(`has an invalid address "${address}"; write ADDRESS/BITS, e.g. 192.0.2.0/24 or 2001:db8::/32`);
  const family = version === 4 ? 'ipv4' : 'ipv6';
  const bits = version === 4 ? 32 : 128;
  if (prefixText === undefined) return ok({ address, family, prefix: bits });
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > bits) {
    return fail(`has an invalid prefix length "/${prefixText}"; use 0 to ${bits}`);
  }
  return ok({ address, family, prefix: Number(prefixText) });
}

/** Back to text: the bare address for a single host, ADDRESS/BITS otherwise. */
export function formatCidr(cidr: Cidr): string {
  return cidr.prefix === (cidr.family === 'ipv4' ? 32 : 128) ? cidr.address : `${cidr.address}/${cidr.prefix}`;
}
