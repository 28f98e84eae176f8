/**
 * The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2): the header a load balancer
 * puts in front of a TCP stream to say whom it carries, read by popwarden's listeners and written
 * toward a backend. Pure functions over Buffers, no sockets: the parser is strict, bounded, and
 * never throws, whatever the bytes (it is a fuzz target).
 */
import { isIPv4, isIPv6 } from 'node:net';
import { MAX_PROXY_V1_OCTETS, MAX_PROXY_V2_OCTETS } from '../config/limits.js';

/** One end of a proxied connection, as the header carries it. */
export interface ProxyEndpoint {
  readonly address: string;
  readonly port: number;
}

/**
 * What a complete header says. `proxied`: the connection is the client's, from `source` to
 * `destination`. `local`: the proxy speaks for itself (a v2 LOCAL health check, v1 UNKNOWN, or a
 * family with no IP address): the connection's own addresses stand.
 */
export type ProxyHeader =
  | { readonly kind: 'proxied'; readonly version: 1 | 2; readonly source: ProxyEndpoint; readonly destination: ProxyEndpoint }
  | { readonly kind: 'local'; readonly version: 1 | 2 };

/**
 * Why bytes are not a header. `missing`: they start as no PROXY header does (a client talking
 * POP3 or TLS directly); `malformed`: they start as one but break a rule; `too-long`: no end
 * within the bound.
 */
export type ProxyHeaderProblem = 'missing' | 'malformed' | 'too-long';

export type ProxyParse =
  | { readonly kind: 'header'; readonly header: ProxyHeader; /** Octets the header used; what follows is the client's. */ readonly length: number }
  | { readonly kind: 'need-more' }
  | { readonly kind: 'error'; readonly problem: ProxyHeaderProblem; readonly detail: string };

/** The v2 signature, §2.2: chosen so that no v1 header, HTTP request or POP3 command starts with it. */
const V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
const V2_FIXED_OCTETS = 16;
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');

/** v2 address families (high nibble of byte 14) and the size of their address block, §2.2. */
const V2_UNSPEC = 0x0;
const V2_INET = 0x1;
const V2_INET6 = 0x2;
const V2_UNIX = 0x3;
const V2_ADDRESS_OCTETS: Readonly<Record<number, number>> = { [V2_UNSPEC]: 0, [V2_INET]: 12, [V2_INET6]: 36, [V2_UNIX]: 216 };
/** v2 transports (low nibble of byte 14): UNSPEC or STREAM; a datagram header on a TCP stream is nonsense. */
const V2_STREAM = 0x1;
const V2_CMD_LOCAL = 0x0;
const V2_CMD_PROXY = 0x1;

const needMore: ProxyParse = { kind: 'need-more' };
const fail = (problem: ProxyHeaderProblem, detail: string): ProxyParse => ({ kind: 'error', problem, detail });

/** True when `bytes` could still grow into `prefix` (or already starts with it). */
function agreesWith(bytes: Buffer, prefix: Buffer): boolean {
  const common = Math.min(bytes.length, prefix.length);
  return bytes.subarray(0, common).equals(prefix.subarray(0, common));
}

/**
 * Reads a PROXY header (v1 or v2) from the start of `bytes`: the header and its length, a request
 * for more bytes, or why these bytes can never be one. Never throws, and never asks for more than
 * the bounds of config/limits.ts allow.
 */
export function parseProxyHeader(bytes: Buffer): ProxyParse {
  if (bytes.length === 0) return needMore;
  if (agreesWith(bytes, V2_SIGNATURE)) return bytes.length < V2_FIXED_OCTETS ? needMore : parseV2(bytes);
  if (agreesWith(bytes, V1_PREFIX)) return parseV1(bytes);
  return fail('missing', 'the connection does not start with a PROXY header');
}

// ---- version 1: one text line, at most 107 octets with its CRLF (§2.1) ----------------------

const DECIMAL_OCTET = '(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
const IPV4_TEXT = new RegExp(`^${DECIMAL_OCTET}(\\.${DECIMAL_OCTET}){3}$`);
/** 0..65535 without leading zeros. */
const PORT_TEXT = /^(0|[1-9][0-9]{0,4})$/;

function parseV1(bytes: Buffer): ProxyParse {
  const searched = bytes.subarray(0, MAX_PROXY_V1_OCTETS);
  const lf = searched.indexOf(0x0a);
  if (lf === -1) {
    return bytes.length >= MAX_PROXY_V1_OCTETS ? fail('too-long', `no CRLF within ${MAX_PROXY_V1_OCTETS} octets`) : needMore;
  }
  if (lf === 0 || searched[lf - 1] !== 0x0d) return fail('malformed', 'the v1 line does not end with CRLF');
  const line = searched.subarray(0, lf - 1).toString('latin1');
  const length = lf + 1;
  // §2.1: after UNKNOWN the receiver ignores everything up to the CRLF.
  if (line === 'PROXY UNKNOWN' || line.startsWith('PROXY UNKNOWN ')) return { kind: 'header', header: { kind: 'local', version: 1 }, length };
  const fields = line.split(' ');
  if (fields.length !== 6) return fail('malformed', 'a v1 line has PROXY, a family, two addresses and two ports, single-spaced');
  const [, family, sourceAddress = '', destinationAddress = '', sourcePort = '', destinationPort = ''] = fields;
  // No zone ID ("%eth0", which isIPv6 accepts): it names an interface on the proxy's host, and its
  // free text would travel on to XCLIENT, a backend's PROXY header and a program's environment.
  const validAddress =
    family === 'TCP4' ? (text: string) => IPV4_TEXT.test(text) : family === 'TCP6' ? (text: string) => isIPv6(text) && !text.includes('%') : undefined;
  if (validAddress === undefined) return fail('malformed', 'the v1 family is not TCP4, TCP6 or UNKNOWN');
  if (!validAddress(sourceAddress) || !validAddress(destinationAddress)) return fail('malformed', `a v1 address is not ${family === 'TCP4' ? 'IPv4' : 'IPv6'}`);
  if (!PORT_TEXT.test(sourcePort) || !PORT_TEXT.test(destinationPort)) return fail('malformed', 'a v1 port is not 0..65535');
  const source = { address: sourceAddress, port: Number(sourcePort) };
  const destination = { address: destinationAddress, port: Number(destinationPort) };
  if (source.port > 65_535 || destination.port > 65_535) return fail('malformed', 'a v1 port is not 0..65535');
  return { kind: 'header', header: { kind: 'proxied', version: 1, source, destination }, length };
}

// ---- version 2: 16 fixed octets, then addresses and TLVs (§2.2) ----------------------------

function parseV2(bytes: Buffer): ProxyParse {
  const versionCommand = bytes[12] ?? 0;
  const familyTransport = bytes[13] ?? 0;
  const payloadOctets = bytes.readUInt16BE(14);
  if (versionCommand >> 4 !== 2) return fail('malformed', 'the v2 version is not 2');
  const command = versionCommand & 0x0f;
  if (command !== V2_CMD_LOCAL && command !== V2_CMD_PROXY) return fail('malformed', 'the v2 command is neither LOCAL nor PROXY');
  const length = V2_FIXED_OCTETS + payloadOctets;
  if (length > MAX_PROXY_V2_OCTETS) return fail('too-long', `the v2 header declares ${length} octets, more than ${MAX_PROXY_V2_OCTETS}`);
  if (bytes.length < length) return needMore;
  const payload = bytes.subarray(V2_FIXED_OCTETS, length);

  const family = familyTransport >> 4;
  const transport = familyTransport & 0x0f;
  const addressOctets = V2_ADDRESS_OCTETS[family];
  if (addressOctets === undefined) return fail('malformed', 'the v2 address family is unknown');
  // §2.2: a LOCAL header's address block, whatever it holds, is ignored ("must ignore").
  if (command === V2_CMD_LOCAL) return { kind: 'header', header: { kind: 'local', version: 2 }, length };
  if (transport !== V2_STREAM && !(family === V2_UNSPEC && transport === 0)) return fail('malformed', 'the v2 transport is not STREAM');
  if (payload.length < addressOctets) return fail('malformed', 'the v2 address block is shorter than its family needs');
  const problem = tlvProblem(payload.subarray(addressOctets));
  if (problem !== undefined) return fail('malformed', problem);
  // UNSPEC and UNIX carry no IP address to count a client by: like LOCAL, the connection's own addresses stand.
  if (family !== V2_INET && family !== V2_INET6) return { kind: 'header', header: { kind: 'local', version: 2 }, length };
  const endpoints = family === V2_INET ? inetEndpoints(payload) : inet6Endpoints(payload);
  return { kind: 'header', header: { kind: 'proxied', version: 2, ...endpoints }, length };
}

/**
 * The TLVs after the addresses (§2.2.1..): popwarden uses none of them, but they must tile the
 * rest of the header exactly, one type octet and a 16-bit length each, or the header is refused:
 * a header whose declared length disagrees with its own contents was not written by a proxy.
 */
function tlvProblem(tlvs: Buffer): string | undefined {
  let offset = 0;
  while (offset < tlvs.length) {
    if (tlvs.length - offset < 3) return 'a v2 TLV is cut short';
    const valueOctets = tlvs.readUInt16BE(offset + 1);
    offset += 3 + valueOctets;
  }
  return offset === tlvs.length ? undefined : 'a v2 TLV runs past the header';
}

function inetEndpoints(payload: Buffer): { source: ProxyEndpoint; destination: ProxyEndpoint } {
  const ipv4 = (at: number): string => `${payload[at]}.${payload[at + 1]}.${payload[at + 2]}.${payload[at + 3]}`;
  return {
    source: { address: ipv4(0), port: payload.readUInt16BE(8) },
    destination: { address: ipv4(4), port: payload.readUInt16BE(10) },
  };
}

function inet6Endpoints(payload: Buffer): { source: ProxyEndpoint; destination: ProxyEndpoint } {
  const ipv6 = (at: number): string => {
    const groups: string[] = [];
    for (let i = 0; i < 8; i++) groups.push(payload.readUInt16BE(at + 2 * i).toString(16));
    return compressIpv6(groups);
  };
  return {
    source: { address: ipv6(0), port: payload.readUInt16BE(32) },
    destination: { address: ipv6(16), port: payload.readUInt16BE(34) },
  };
}

/** RFC 5952 §4: the longest run (two or more) of zero groups becomes "::"; an IPv4-mapped address keeps its dotted tail. */
function compressIpv6(groups: readonly string[]): string {
  if (groups.slice(0, 5).every((g) => g === '0') && groups[5] === 'ffff') {
    const low = (text: string | undefined): number => parseInt(text ?? '0', 16);
    const [hi, lo] = [low(groups[6]), low(groups[7])];
    return `::ffff:${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  let best = { start: -1, length: 1 };
  for (let start = 0; start < 8; ) {
    if (groups[start] !== '0') {
      start += 1;
      continue;
    }
    let end = start;
    while (end < 8 && groups[end] === '0') end += 1;
    if (end - start > best.length) best = { start, length: end - start };
    start = end;
  }
  if (best.start === -1) return groups.join(':');
  return `${groups.slice(0, best.start).join(':')}::${groups.slice(best.start + best.length).join(':')}`;
}

// ---- writing a header toward a backend ------------------------------------------------------

export type ProxyVersion = 'v1' | 'v2';

/**
 * The header that tells a backend the connection carries `source`'s session, made to
 * `destination`. Both ends must be IP addresses; an IPv4 end beside an IPv6 one is written in
 * its IPv4-mapped form, since a header has one family.
 */
export function encodeProxyHeader(version: ProxyVersion, source: ProxyEndpoint, destination: ProxyEndpoint): Buffer {
  const ipv6 = !isIPv4(source.address) || !isIPv4(destination.address);
  const asFamily = (address: string): string => (ipv6 && isIPv4(address) ? `::ffff:${address}` : address);
  const [from, to] = [asFamily(source.address), asFamily(destination.address)];
  if (version === 'v1') {
    return Buffer.from(`PROXY ${ipv6 ? 'TCP6' : 'TCP4'} ${from} ${to} ${source.port} ${destination.port}\r\n`, 'latin1');
  }
  const addressOctets = ipv6 ? 36 : 12;
  const header = Buffer.alloc(V2_FIXED_OCTETS + addressOctets);
  V2_SIGNATURE.copy(header);
  header[12] = 0x20 | V2_CMD_PROXY;
  header[13] = ((ipv6 ? V2_INET6 : V2_INET) << 4) | V2_STREAM;
  header.writeUInt16BE(addressOctets, 14);
  const addressLength = ipv6 ? 16 : 4;
  writeAddress(header, V2_FIXED_OCTETS, from, ipv6);
  writeAddress(header, V2_FIXED_OCTETS + addressLength, to, ipv6);
  header.writeUInt16BE(source.port, V2_FIXED_OCTETS + 2 * addressLength);
  header.writeUInt16BE(destination.port, V2_FIXED_OCTETS + 2 * addressLength + 2);
  return header;
}

/**
 * The header of a connection popwarden makes on its own behalf (the backend probe): v2 LOCAL, or
 * v1 UNKNOWN, so the backend keeps the connection's real addresses.
 */
export function encodeLocalProxyHeader(version: ProxyVersion): Buffer {
  if (version === 'v1') return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  const header = Buffer.alloc(V2_FIXED_OCTETS);
  V2_SIGNATURE.copy(header);
  header[12] = 0x20 | V2_CMD_LOCAL;
  return header;
}

function writeAddress(target: Buffer, offset: number, address: string, ipv6: boolean): void {
  if (!ipv6) {
    address.split('.').forEach((octet, i) => (target[offset + i] = Number(octet)));
    return;
  }
  ipv6Groups(address).forEach((group, i) => target.writeUInt16BE(group, offset + 2 * i));
}

/** The eight 16-bit groups of an IPv6 address (with "::" and an optional dotted IPv4 tail). */
function ipv6Groups(address: string): number[] {
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(address);
  let text = address;
  if (dotted !== null) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${address.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((group) => parseInt(group, 16)));
  const before = parse(head);
  const after = tail === undefined ? [] : parse(tail);
  return [...before, ...Array<number>(8 - before.length - after.length).fill(0), ...after];
}
