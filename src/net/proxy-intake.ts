/**
 * Who a client is: the socket's peer, or, on a listener behind a load balancer, the client a
 * trusted proxy names in its PROXY protocol header. The header is read here from the raw TCP
 * socket, before anything else reads it (no TLS, no POP3), and the bytes behind it are put back
 * untouched for whoever reads next.
 */
import type { Socket } from 'node:net';
import { parseProxyHeader, type ProxyHeader } from './proxy-protocol.js';
import { normaliseAddress } from './addresses.js';
import type { ConnectionRefusal } from '../observability/metrics.js';

/**
 * The one "client address" of a connection: what rate limits, connection bounds, handshake caps,
 * logs and audit lines use, and what popwarden passes on to the backend.
 */
export interface ClientOrigin {
  /** The client's address, normalised (IPv4-mapped IPv6 as plain IPv4). */
  readonly address: string;
  readonly port: number;
  /** The address and port the client connected to (the load balancer's, when proxied). */
  readonly localAddress: string;
  readonly localPort: number;
  /** "ADDRESS:PORT" of the load balancer that carried the connection; undefined for a direct client. */
  readonly via: string | undefined;
}

/** A set of addresses (the trusted load balancers): CidrList fits. */
export interface AddressSet {
  has(address: string): boolean;
}

/**
 * The connections from trusted proxies still waiting for their header, the whole process (every
 * PROXY listener): each may take timeouts.proxy_protocol, and a broad proxy_protocol_trusted must
 * not let a host inside it hold connections without limit. `max` 0 = no bound.
 */
export class HeaderWaits {
  #waiting = 0;
  constructor(readonly max: number) {}

  /** A place for one more connection's header, with its (idempotent) release, or undefined when full. */
  enter(): (() => void) | undefined {
    if (this.max > 0 && this.#waiting >= this.max) return undefined;
    this.#waiting += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#waiting -= 1;
    };
  }
}

/** Why a connection on a PROXY listener was closed before any other work (a connection refusal). */
export type ProxyRefusal = Extract<ConnectionRefusal, `proxy_${string}`>;

export type ProxyIntake =
  | { readonly kind: 'accepted'; readonly origin: ClientOrigin }
  | { readonly kind: 'refused'; readonly reason: ProxyRefusal; readonly detail: string };

const peerText = (address: string, port: number): string => (address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`);

/** A client that connected directly: the socket's own addresses. */
export function directOrigin(socket: Socket): ClientOrigin {
  return {
    address: normaliseAddress(socket.remoteAddress ?? ''),
    port: socket.remotePort ?? 0,
    localAddress: normaliseAddress(socket.localAddress ?? ''),
    localPort: socket.localPort ?? 0,
    via: undefined,
  };
}

/** The origin a header gives: its source and destination, or the socket's own for LOCAL/UNKNOWN. */
export function originFrom(socket: Socket, header: ProxyHeader): ClientOrigin {
  const direct = directOrigin(socket);
  if (header.kind === 'local') return direct;
  return {
    address: normaliseAddress(header.source.address),
    port: header.source.port,
    localAddress: normaliseAddress(header.destination.address),
    localPort: header.destination.port,
    via: peerText(direct.address, direct.port),
  };
}

/**
 * Reads the PROXY header that must open `socket`, from an address in `trusted`, within
 * `timeoutMs`. On success the socket is left paused with the bytes after the header unshifted, so
 * the session (or the TLS server) reads the client's first byte as if nothing had come before.
 * A refusal leaves the socket to the caller, who closes it. Buffers at most one header
 * (MAX_PROXY_V2_OCTETS), whatever arrives, and holds a place in `waits` until it is done.
 */
export function readProxyHeader(socket: Socket, trusted: AddressSet, timeoutMs: number, waits: HeaderWaits): Promise<ProxyIntake> {
  // A peer that hung up before its connection was taken in has no address left to judge.
  if (socket.remoteAddress === undefined) return Promise.resolve({ kind: 'refused', reason: 'proxy_closed', detail: 'closed before its header' });
  const peer = normaliseAddress(socket.remoteAddress);
  if (!trusted.has(peer)) {
    return Promise.resolve({ kind: 'refused', reason: 'proxy_untrusted', detail: `${peer} is not in proxy_protocol_trusted` });
  }
  const release = waits.enter();
  if (release === undefined) {
    return Promise.resolve({ kind: 'refused', reason: 'proxy_pending', detail: `${waits.max} connections are waiting for their PROXY header (limits.max_handshakes)` });
  }
  return new Promise((resolve) => {
    let buffered: Buffer = Buffer.alloc(0);
    const finish = (intake: ProxyIntake): void => {
      release();
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onGone);
      socket.off('close', onGone);
      socket.off('error', onGone);
      resolve(intake);
    };
    const onData = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const parsed = parseProxyHeader(buffered);
      if (parsed.kind === 'need-more') return;
      socket.pause();
      if (parsed.kind === 'error') {
        const reason = parsed.problem === 'missing' ? 'proxy_missing' : 'proxy_malformed';
        return finish({ kind: 'refused', reason, detail: parsed.detail });
      }
      const rest = buffered.subarray(parsed.length);
      if (rest.length > 0) socket.unshift(rest);
      finish({ kind: 'accepted', origin: originFrom(socket, parsed.header) });
    };
    const onGone = (): void =>
      finish({ kind: 'refused', reason: 'proxy_closed', detail: `the connection ended after ${buffered.length} octets, before a whole PROXY header` });
    const timer = setTimeout(
      () => finish({ kind: 'refused', reason: 'proxy_timeout', detail: `no whole PROXY header within ${timeoutMs} ms (timeouts.proxy_protocol)` }),
      timeoutMs,
    );
    socket.on('data', onData);
    socket.once('end', onGone);
    socket.once('close', onGone);
    socket.once('error', onGone);
    // The listener accepts paused (so a refused connection is never read): reading starts here.
    socket.resume();
  });
}
