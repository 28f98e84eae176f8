/**
 * The PROXY protocol header parser (net/proxy-protocol.ts): any bytes give a header, a request
 * for more, or a refusal, never an exception; every header popwarden encodes parses back whole,
 * and each of its prefixes only asks for more.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encodeProxyHeader, parseProxyHeader } from '../../../src/net/proxy-protocol.js';
import { byteStream } from '../inputs.js';
import { defineTarget } from '../target.js';

const endpoint = fc.record({ address: fc.oneof(fc.ipV4(), fc.ipV6()), port: fc.integer({ min: 0, max: 65535 }) });
const V2 = '\r\n\r\n\0\r\nQUIT\n';

export default defineTarget({
  name: 'proxy-protocol',
  about: 'PROXY v1/v2 headers: a header, need-more or a refusal; encoded headers parse back whole',
  input: fc.record({
    version: fc.constantFrom('v1' as const, 'v2' as const),
    source: endpoint,
    destination: endpoint,
    cut: fc.nat(),
    noise: byteStream(['PROXY ', 'TCP4 ', 'TCP6 ', 'UNKNOWN', '1.2.3.4 ', '::1 ', '65535 ', '\r\n', V2, '\x21\x11\x00\x0c', '\x20\x00\x00\x00'], 107, 12),
  }),
  check({ version, source, destination, cut, noise }) {
    const header = encodeProxyHeader(version, source, destination);
    const parsed = parseProxyHeader(Buffer.concat([header, Buffer.from('USER x\r\n')]));
    assert.equal(parsed.kind, 'header');
    assert.equal(parsed.kind === 'header' && parsed.length, header.length);
    assert.equal(parseProxyHeader(header.subarray(0, cut % header.length)).kind, 'need-more');
    const any = parseProxyHeader(noise);
    if (any.kind === 'header') assert.ok(any.length <= noise.length);
  },
});
