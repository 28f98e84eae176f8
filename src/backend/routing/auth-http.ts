/**
 * routing.auth_http: asks a routing service that speaks nginx's mail auth_http protocol, so an
 * ISP can reuse the one it runs for nginx. The request is a GET with Auth-Method, Auth-User,
 * Auth-Protocol: pop3, Auth-Login-Attempt, Client-IP and Client-Host headers (Auth-Pass only with
 * send_password: true); the answer is `Auth-Status: OK` with Auth-Server and Auth-Port, or a
 * refusal (`Auth-Status: <message>`, optionally `Auth-Wait: <seconds>`). The message is never
 * shown to the client (popwarden sends its own failure reply, B-06). The exchange is bounded in
 * time (timeout) and size (8 KiB of headers, the body is not read); anything else is an `error`,
 * and the router asks routing.default.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AuthHttpConfig } from '../../config/types.js';
import { parseHostPort } from '../../config/values.js';
import type { RouteQuery, RouteSource, SourceAnswer } from './source.js';

/** Response headers larger than this end the exchange (Node's own default is 16 KiB). */
export const MAX_AUTH_HTTP_HEADER_OCTETS = 8 * 1024;
/** An Auth-Wait beyond this is cut to it: a refusal must not hold a connection for long. */
export const MAX_AUTH_WAIT_MS = 30_000;

/** nginx's escaping of Auth-User and Auth-Pass: bytes outside printable ASCII, space and "%" as %XX. */
export function escapeAuthValue(bytes: Buffer): string {
  let out = '';
  for (const byte of bytes) out += byte > 0x20 && byte < 0x7f && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

/** The request headers for one login. */
export function authHttpHeaders(query: RouteQuery, sendPassword: boolean): Record<string, string> {
  return {
    'Auth-Method': 'plain',
    'Auth-User': escapeAuthValue(Buffer.from(query.user, 'latin1')),
    ...(sendPassword ? { 'Auth-Pass': escapeAuthValue(query.password()) } : {}),
    'Auth-Protocol': 'pop3',
    'Auth-Login-Attempt': String(query.attempt),
    'Client-IP': query.clientIp,
    // nginx sends this when it has no resolver; popwarden never resolves client addresses.
    'Client-Host': '[UNAVAILABLE]',
  };
}

const header = (response: IncomingMessage, name: string): string | undefined => {
  const value = response.headers[name];
  return Array.isArray(value) ? value[0] : value;
};

/** The answer a response's headers carry. */
export function readAuthHttpAnswer(response: IncomingMessage): SourceAnswer {
  if (response.statusCode !== 200) return { kind: 'error', reason: `status ${response.statusCode ?? '?'}` };
  const status = header(response, 'auth-status');
  if (status === undefined) return { kind: 'error', reason: 'no Auth-Status header' };
  if (status.trim() !== 'OK') {
    const wait = Number.parseInt(header(response, 'auth-wait') ?? '0', 10);
    return { kind: 'refused', waitMs: Number.isFinite(wait) && wait > 0 ? Math.min(wait * 1000, MAX_AUTH_WAIT_MS) : 0 };
  }
  const server = header(response, 'auth-server')?.trim();
  const port = header(response, 'auth-port')?.trim();
  if (server === undefined || port === undefined) return { kind: 'error', reason: 'Auth-Status OK without Auth-Server and Auth-Port' };
  const parsed = parseHostPort(server.includes(':') ? `[${server}]:${port}` : `${server}:${port}`, { allowPortZero: false });
  return parsed.ok ? { kind: 'address', address: parsed.value } : { kind: 'error', reason: `Auth-Server/Auth-Port: ${parsed.problem}` };
}

export function authHttpSource(config: AuthHttpConfig): RouteSource {
  const url = new URL(config.url);
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return {
    name: 'auth_http',
    lookup(query): Promise<SourceAnswer> {
      return new Promise((resolve) => {
        const request = send(url, {
          method: 'GET',
          headers: authHttpHeaders(query, config.sendPassword),
          maxHeaderSize: MAX_AUTH_HTTP_HEADER_OCTETS,
          signal: AbortSignal.timeout(config.timeoutMs),
          agent: false,
        });
        request.on('response', (response) => {
          resolve(readAuthHttpAnswer(response));
          // The answer is in the headers; the body is never read.
          response.destroy();
          request.destroy();
        });
        request.on('error', (error) => {
          const reason = error.name === 'AbortError' || error.name === 'TimeoutError' ? `no answer within ${config.timeoutMs} ms` : error.message;
          resolve({ kind: 'error', reason });
        });
        request.end();
      });
    },
  };
}
