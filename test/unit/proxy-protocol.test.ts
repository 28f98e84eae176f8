/**
 * The PROXY protocol parser and writer (src/net/proxy-protocol.ts): the examples of HAProxy's
 * proxy-protocol.txt, the rules it is strict about, and properties over generated headers and
 * arbitrary bytes: it never throws, never asks for more than its bounds, and every split point of
 * a valid header reads as "need more" until the header is whole.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  encodeLocalProxyHeader,
  encodeProxyHeader,
  parseProxyHeader,
  type ProxyEndpoint,
  type ProxyParse,
  type ProxyVersion,
} from '../../src/net/proxy-protocol.js';
import { MAX_PROXY_V1_OCTETS, MAX_PROXY_V2_OCTETS } from '../../src/config/limits.js';

const SIG = '0d0a0d0a000d0a515549540a';
const hex = (text: string): Buffer => Buffer.from(text.replace(/\s+/g, ''), 'hex');
const text = (line: string): Buffer => Buffer.from(line, 'latin1');

function header(result: ProxyParse) {
  assert.equal(result.kind, 'header', JSON.stringify(result));
  return result.kind === 'header' ? result : assert.fail();
}
function problem(result: ProxyParse): string {
  assert.equal(result.kind, 'error', JSON.stringify(result));
  return result.kind === 'error' ? result.problem : assert.fail();
}

test('v1 TCP4 and TCP6 lines carry both ends; the bytes after the CRLF are not the header', () => {
  const v4 = header(parseProxyHeader(text('PROXY TCP4 192.0.2.5 198.51.100.1 56324 995\r\nUSER x')));
  assert.equal(v4.length, 'PROXY TCP4 192.0.2.5 198.51.100.1 56324 995\r\n'.length);
  assert.deepEqual(v4.header, {
    kind: 'proxied',
    version: 1,
    source: { address: '192.0.2.5', port: 56324 },
    destination: { address: '198.51.100.1', port: 995 },
  });
  const v6 = header(parseProxyHeader(text('PROXY TCP6 2001:db8::5 2001:db8::1 65535 110\r\n')));
  assert.deepEqual(v6.header, {
    kind: 'proxied',
    version: 1,
    source: { address: '2001:db8::5', port: 65535 },
    destination: { address: '2001:db8::1', port: 110 },
  });
});

test('v1 UNKNOWN keeps the connection addresses, whatever follows it on the line', () => {
  assert.deepEqual(header(parseProxyHeader(text('PROXY UNKNOWN\r\n'))).header, { kind: 'local', version: 1 });
  assert.deepEqual(header(parseProxyHeader(text('PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n'))).header, { kind: 'local', version: 1 });
});

test('v1 lines that break a rule are malformed', () => {
  for (const bad of [
    'PROXY TCP4 192.0.2.5 198.51.100.1 56324 995\n', // bare LF
    'PROXY TCP4 192.0.2.5  198.51.100.1 56324 995\r\n', // two spaces
    'PROXY TCP4 192.0.2.5 198.51.100.1 56324\r\n', // a port missing
    'PROXY TCP4 192.0.2.5 198.51.100.1 56324 995 1\r\n', // a field too many
    'PROXY TCP4 2001:db8::5 198.51.100.1 1 2\r\n', // IPv6 in TCP4
    'PROXY TCP6 192.0.2.5 2001:db8::1 1 2\r\n', // IPv4 in TCP6
    // A zone ID (node's isIPv6 takes one) names an interface of the proxy's host, not a client, and its
    // text would reach XCLIENT ADDR=, a backend's PROXY header, an exec: program's TCPREMOTEIP and the logs.
    'PROXY TCP6 fe80::1%eth0 2001:db8::1 1 2\r\n',
    'PROXY TCP6 2001:db8::5 fe80::1%LOGIN.x 1 2\r\n',
    'PROXY TCP4 192.0.2.05 198.51.100.1 1 2\r\n', // leading zero in an octet
    'PROXY TCP4 192.0.2.256 198.51.100.1 1 2\r\n',
    'PROXY TCP4 192.0.2.5 198.51.100.1 065 2\r\n', // leading zero in a port
    'PROXY TCP4 192.0.2.5 198.51.100.1 65536 2\r\n',
    'PROXY TCP4 192.0.2.5 198.51.100.1 -1 2\r\n',
    'PROXY UDP4 192.0.2.5 198.51.100.1 1 2\r\n',
    'PROXY tcp4 192.0.2.5 198.51.100.1 1 2\r\n',
  ]) {
    assert.equal(problem(parseProxyHeader(text(bad))), 'malformed', bad);
  }
});

test('v1: no CRLF within 107 octets is too long; fewer octets without one need more', () => {
  const long = text(`PROXY UNKNOWN ${'x'.repeat(MAX_PROXY_V1_OCTETS)}\r\n`);
  assert.equal(problem(parseProxyHeader(long)), 'too-long');
  assert.equal(parseProxyHeader(long.subarray(0, MAX_PROXY_V1_OCTETS - 1)).kind, 'need-more');
  // The longest legal line (TCP6, full addresses, 5-digit ports) is exactly 104 octets: accepted.
  const full = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
  const longest = text(`PROXY TCP6 ${full} ${full} 65535 65535\r\n`);
  assert.ok(longest.length <= MAX_PROXY_V1_OCTETS);
  assert.equal(parseProxyHeader(longest).kind, 'header');
});

test('bytes that start as no header does are "missing": POP3, a TLS ClientHello, HTTP', () => {
  for (const bytes of [text('USER alice\r\n'), hex('16030100a5010000a1'), text('GET / HTTP/1.1\r\n'), text('PROXZ'), hex('0d0a0d0a00ff')]) {
    assert.equal(problem(parseProxyHeader(bytes)), 'missing', bytes.toString('hex'));
  }
  assert.equal(parseProxyHeader(Buffer.alloc(0)).kind, 'need-more');
  assert.equal(parseProxyHeader(text('PROX')).kind, 'need-more');
  assert.equal(parseProxyHeader(hex('0d0a0d0a000d0a')).kind, 'need-more');
});

test('v2 PROXY over IPv4 and IPv6, as HAProxy sends it', () => {
  const v4 = hex(`${SIG} 21 11 000c c0000205 c6336401 dc04 03e3`);
  const parsed = header(parseProxyHeader(Buffer.concat([v4, text('rest')])));
  assert.equal(parsed.length, 28);
  assert.deepEqual(parsed.header, {
    kind: 'proxied',
    version: 2,
    source: { address: '192.0.2.5', port: 56324 },
    destination: { address: '198.51.100.1', port: 995 },
  });
  const v6 = hex(`${SIG} 21 21 0024 20010db8000000000000000000000005 20010db8000000000000000000000001 dc04 006e`);
  assert.deepEqual(header(parseProxyHeader(v6)).header, {
    kind: 'proxied',
    version: 2,
    source: { address: '2001:db8::5', port: 56324 },
    destination: { address: '2001:db8::1', port: 110 },
  });
  const mapped = hex(`${SIG} 21 21 0024 00000000000000000000ffffc0000205 00000000000000000000ffffc6336401 0001 0002`);
  const mappedHeader = header(parseProxyHeader(mapped)).header;
  assert.ok(mappedHeader.kind === 'proxied');
  assert.equal(mappedHeader.source.address, '::ffff:192.0.2.5');
});

test('v2 LOCAL, UNSPEC and UNIX keep the connection addresses; LOCAL ignores its address block', () => {
  assert.deepEqual(header(parseProxyHeader(hex(`${SIG} 20 00 0000`))), { kind: 'header', header: { kind: 'local', version: 2 }, length: 16 });
  assert.deepEqual(header(parseProxyHeader(hex(`${SIG} 20 11 000c ${'00'.repeat(12)}`))).header, { kind: 'local', version: 2 });
  assert.deepEqual(header(parseProxyHeader(hex(`${SIG} 21 00 0000`))).header, { kind: 'local', version: 2 });
  const unix = Buffer.concat([hex(`${SIG} 21 31 00d8`), Buffer.alloc(216)]);
  assert.deepEqual(header(parseProxyHeader(unix)), { kind: 'header', header: { kind: 'local', version: 2 }, length: 232 });
});

test('v2 TLVs are skipped when they tile the header exactly, refused when they do not', () => {
  // PP2_TYPE_ALPN "pop3", PP2_TYPE_NOOP with 3 octets of padding, PP2_TYPE_UNIQUE_ID empty.
  const tlvs = '01 0004 706f7033 04 0003 000000 05 0000';
  const withTlvs = hex(`${SIG} 21 11 ${(12 + 7 + 6 + 3).toString(16).padStart(4, '0')} c0000205 c6336401 0001 0002 ${tlvs}`);
  const parsed = header(parseProxyHeader(Buffer.concat([withTlvs, text('USER')])));
  assert.equal(parsed.length, withTlvs.length);
  assert.ok(parsed.header.kind === 'proxied' && parsed.header.source.address === '192.0.2.5');
  // A TLV whose length runs past the end, and a stray octet too short to be a TLV.
  assert.equal(problem(parseProxyHeader(hex(`${SIG} 21 11 0010 c0000205 c6336401 0001 0002 01 0005 aa`))), 'malformed');
  assert.equal(problem(parseProxyHeader(hex(`${SIG} 21 11 000e c0000205 c6336401 0001 0002 01 00`))), 'malformed');
});

test('v2 headers that break a rule are refused', () => {
  assert.equal(problem(parseProxyHeader(hex(`${SIG} 11 11 000c ${'00'.repeat(12)}`))), 'malformed', 'version 1 nibble');
  assert.equal(problem(parseProxyHeader(hex(`${SIG} 22 11 000c ${'00'.repeat(12)}`))), 'malformed', 'command 2');
  assert.equal(problem(parseProxyHeader(hex(`${SIG} 21 12 000c ${'00'.repeat(12)}`))), 'malformed', 'DGRAM');
  assert.equal(problem(parseProxyHeader(hex(`${SIG} 21 41 000c ${'00'.repeat(12)}`))), 'malformed', 'family 4');
  assert.equal(problem(parseProxyHeader(hex(`${SIG} 21 11 0008 ${'00'.repeat(8)}`))), 'malformed', 'short INET block');
  assert.equal(problem(parseProxyHeader(hex(`${SIG} 21 21 000c ${'00'.repeat(12)}`))), 'malformed', 'short INET6 block');
  assert.equal(problem(parseProxyHeader(hex(`${SIG} 21 11 ffff`))), 'too-long', 'declares 64 KiB');
  assert.equal(parseProxyHeader(hex(`${SIG} 21 11 000c c000`)).kind, 'need-more');
});

test('the probe header: v2 LOCAL and v1 UNKNOWN', () => {
  assert.deepEqual(encodeLocalProxyHeader('v2'), hex(`${SIG} 20 00 0000`));
  assert.equal(encodeLocalProxyHeader('v1').toString('latin1'), 'PROXY UNKNOWN\r\n');
  assert.equal(header(parseProxyHeader(encodeLocalProxyHeader('v2'))).header.kind, 'local');
});

test('an IPv4 end beside an IPv6 one is written IPv4-mapped, in both versions', () => {
  const source = { address: '192.0.2.5', port: 1 };
  const destination = { address: '2001:db8::1', port: 2 };
  assert.equal(encodeProxyHeader('v1', source, destination).toString('latin1'), 'PROXY TCP6 ::ffff:192.0.2.5 2001:db8::1 1 2\r\n');
  const parsed = header(parseProxyHeader(encodeProxyHeader('v2', source, destination))).header;
  assert.ok(parsed.kind === 'proxied');
  assert.equal(parsed.source.address, '::ffff:192.0.2.5');
  assert.equal(parsed.destination.address, '2001:db8::1');
});

// ---- properties ----------------------------------------------------------------------------

const port = fc.integer({ min: 0, max: 65_535 });
const endpoint = (address: fc.Arbitrary<string>): fc.Arbitrary<ProxyEndpoint> => fc.record({ address, port });
const endpoints = fc.oneof(
  fc.tuple(endpoint(fc.ipV4()), endpoint(fc.ipV4())),
  fc.tuple(endpoint(fc.ipV6()), endpoint(fc.ipV6())),
  fc.tuple(endpoint(fc.ipV4()), endpoint(fc.ipV6())),
);
const version = fc.constantFrom<ProxyVersion>('v1', 'v2');

test('property: a written header reads back as the same ends, and rewrites to the same bytes', () => {
  fc.assert(
    fc.property(version, endpoints, fc.uint8Array({ maxLength: 64 }), (v, [source, destination], after) => {
      const written = encodeProxyHeader(v, source, destination);
      const parsed = header(parseProxyHeader(Buffer.concat([written, after])));
      assert.equal(parsed.length, written.length);
      assert.ok(parsed.header.kind === 'proxied');
      assert.equal(parsed.header.source.port, source.port);
      assert.equal(parsed.header.destination.port, destination.port);
      assert.deepEqual(encodeProxyHeader(v, parsed.header.source, parsed.header.destination), written);
    }),
    { numRuns: 500 },
  );
});

test('property: every split point of a header needs more until the header is whole', () => {
  fc.assert(
    fc.property(version, endpoints, (v, [source, destination]) => {
      const written = encodeProxyHeader(v, source, destination);
      for (let cut = 0; cut < written.length; cut++) assert.equal(parseProxyHeader(written.subarray(0, cut)).kind, 'need-more', `cut at ${cut}`);
      assert.equal(parseProxyHeader(written).kind, 'header');
    }),
    { numRuns: 200 },
  );
});

const prefixes = fc.constantFrom(Buffer.alloc(0), text('PROXY '), text('PROXY TCP4 '), text('PROXY UNKNOWN'), hex(SIG), hex(`${SIG} 21 11`), hex(`${SIG} 21 21 0024`));
const anyBytes = fc.tuple(prefixes, fc.uint8Array({ maxLength: 3_000 })).map(([prefix, rest]) => Buffer.concat([prefix, Buffer.from(rest)]));

test('property: arbitrary bytes never throw, and a parse is bounded and consistent', () => {
  fc.assert(
    fc.property(anyBytes, (bytes) => {
      const result = parseProxyHeader(bytes);
      if (result.kind === 'need-more') assert.ok(bytes.length < MAX_PROXY_V2_OCTETS, `asked for more after ${bytes.length} octets`);
      if (result.kind === 'header') {
        assert.ok(result.length > 0 && result.length <= bytes.length);
        assert.ok(result.length <= MAX_PROXY_V2_OCTETS);
        // The same header with anything after it reads the same.
        assert.deepEqual(parseProxyHeader(Buffer.concat([bytes.subarray(0, result.length), text('x')])), result);
      }
    }),
    { numRuns: 2_000 },
  );
});

test('property: a v2 header with one octet changed is read without throwing, never as a longer header', () => {
  fc.assert(
    fc.property(endpoints, fc.nat(), fc.integer({ min: 0, max: 255 }), ([source, destination], at, value) => {
      const written = Buffer.from(encodeProxyHeader('v2', source, destination));
      written[at % written.length] = value;
      const result = parseProxyHeader(written);
      if (result.kind === 'header') assert.ok(result.length <= written.length);
    }),
    { numRuns: 1_000 },
  );
});
