/**
 * Front-door checks on the first bytes of a plaintext connection, before any POP3 parsing: a TLS
 * ClientHello sent to the STLS port (a client configured for port 995), or an HTTP request (a
 * browser, or a cross-protocol attack such as ALPACA, X-05). Neither can become a POP3 session.
 */
export type ForeignProtocol = 'tls' | 'http' | undefined;

const TLS_HANDSHAKE_RECORD = 0x16;
const TLS_MAJOR_VERSION = 0x03;
const HTTP_REQUEST = /^(GET|POST|HEAD|PUT|DELETE|OPTIONS|CONNECT|TRACE|PATCH) \S+ HTTP\/\d/;

/** Recognises a foreign protocol from the first chunk a client sent. */
export function detectForeignProtocol(firstChunk: Buffer): ForeignProtocol {
  if (firstChunk[0] === TLS_HANDSHAKE_RECORD && firstChunk[1] === TLS_MAJOR_VERSION) return 'tls';
  if (HTTP_REQUEST.test(firstChunk.subarray(0, 64).toString('latin1'))) return 'http';
  return undefined;
}
