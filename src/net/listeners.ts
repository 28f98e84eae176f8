import { createServer as createPlainServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import type { ListenerConfig } from '../config/types.js';
import type { TlsProvider } from './tls-provider.js';
import type { Logger } from '../observability/log.js';
import type { ConnectionRefusal, Metrics } from '../observability/metrics.js';
import type { ConnectionGate } from './connection-gate.js';
import type { ReturningClients } from './returning-clients.js';
import { selectPop3Alpn } from './starttls.js';
import { directOrigin, readProxyHeader, type AddressSet, type ClientOrigin, type HeaderWaits } from './proxy-intake.js';
import { Reply, line } from '../pop3/replies.js';
import { RefusalBursts } from './refusal-bursts.js';
import { normaliseAddress } from './addresses.js';
import { MAX_REFUSAL_LOG_ADDRESSES, REFUSAL_LOG_WINDOW_MS } from '../config/limits.js';
import type { RefusalHold } from './refusal-hold.js';

/**
 * What a listener hands over for every accepted client: the socket, whether it is TLS already,
 * who the client is (its PROXY header's word on a listener behind a load balancer), and the
 * release of its place under the gate's bounds (idempotent; the socket's close calls it too), for
 * a session evicted to make room, whose place must be free before its socket has closed.
 */
export type AcceptHandler = (socket: Socket | TLSSocket, secure: boolean, listener: ListenerConfig, client: ClientOrigin, release: () => void) => void;

export interface BoundServer {
  readonly config: ListenerConfig;
  readonly server: Server;
  readonly address: AddressInfo;
}

export interface ListenerDependencies {
  /** The current certificates; implicit-TLS servers follow its reloads with setSecureContext(). */
  readonly tls: TlsProvider;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly gate: ConnectionGate;
  /**
   * With `config.proxyProtocol`: the load balancers that may send the header, how long it may
   * take, and the bound on connections waiting for theirs, which every PROXY listener shares.
   */
  readonly proxy?: { readonly trusted: AddressSet; readonly timeoutMs: number; readonly waits: HeaderWaits };
  /**
   * The gate's makeRoom when limits.max_sessions is full: closes the oldest session not logged in,
   * if one qualifies, and releases its place (true), so the new connection is admitted after all.
   */
  readonly evictIdleSession?: () => boolean;
  /** Addresses a login succeeded from lately: the process bounds keep a share for them. Default: none. */
  readonly returning?: ReturningClients;
  /** Where refusals of an address's rate wait before their bare close (a tarpit). Default: closed at once. */
  readonly hold?: RefusalHold;
}

/**
 * When each raw connection arrived, to time the implicit-TLS handshake. Keyed by the peer's
 * address and port, which the TLS socket shares with the TCP socket beneath it.
 */
const acceptedAt = new Map<string, number>();
const peerKey = (socket: Socket): string => `${socket.remoteAddress}|${socket.remotePort}`;
const handshakeSeconds = (socket: Socket): number =>
  (performance.now() - (acceptedAt.get(peerKey(socket)) ?? performance.now())) / 1000;
/**
 * The raw TCP socket under an implicit-TLS socket (Node's `_parent`), whose address was read at
 * accept: asked of the TLS socket, Node would cache a copy of it there for the session's life.
 */
const rawSocketOf = (socket: TLSSocket): Socket => (socket as TLSSocket & { _parent?: Socket })._parent ?? socket;

/**
 * What a refused client is told: an `-ERR` line on the STLS port, where the client reads POP3 in
 * clear, and nothing on the implicit-TLS port, where it waits for a ServerHello and a POP3 line is
 * only a TLS error. There the refusal is a bare close: a refusal is what a flood gets thousands of
 * times a second, and the line, its FIN and the wait for both to leave cost more than the rest of
 * the refusal together (issue 14.3: the write alone was a seventh of popwarden's CPU under the
 * oversized-SASL attack).
 */
function refusalReply(kind: ListenerConfig['kind'], reason: ConnectionRefusal): string | undefined {
  if (kind === 'tls') return undefined;
  switch (reason) {
    case 'denied':
      return Reply.connectionDenied;
    case 'too_many_sessions':
    case 'too_many_connections':
    case 'too_many_connections_per_minute':
      return Reply.tooManyConnections;
    case 'too_many_protocol_errors':
      return Reply.tooManyProtocolErrors;
    case 'max_sessions':
      return Reply.serverBusy;
    case 'too_many_handshakes':
    case 'max_handshakes':
      return undefined;
    // The peer is a load balancer, or something pretending to be one: no POP3 line for either.
    case 'proxy_untrusted':
    case 'proxy_missing':
    case 'proxy_malformed':
    case 'proxy_timeout':
    case 'proxy_closed':
    case 'proxy_pending':
      return undefined;
  }
}

/** What a refusal logs of its client: who, and through which load balancer. */
type RefusedClient = Pick<ClientOrigin, 'address' | 'via'>;

/**
 * Refusals an address can repeat as fast as it connects, each costing popwarden almost nothing:
 * logged once per burst (refusal-bursts.ts), not once per connection. The other refusals are
 * bounded by what the address holds open or by the whole process, and each is logged.
 */
const LOGGED_PER_BURST: ReadonlySet<ConnectionRefusal> = new Set([
  'too_many_connections',
  'too_many_connections_per_minute',
  'too_many_protocol_errors',
]);

/**
 * Binds one listener. Every TCP connection first passes the gate (deny list, per-IP and process bounds)
 * before any TLS or POP3 work; on a listener with proxy_protocol, its PROXY header comes first,
 * and the gate and every later step judge the client it names. Implicit-TLS listeners hand over
 * sockets after the handshake (popwarden's greeting follows it, RFC 8314 §3); STLS listeners hand
 * over the plain socket. Rejects with the bind error (EADDRINUSE, EACCES) so startup can fail as a whole.
 */
export function bindListener(config: ListenerConfig, deps: ListenerDependencies, onAccept: AcceptHandler): Promise<BoundServer> {
  const { tls, log, metrics, gate } = deps;
  /** Release functions of this listener's handshakes in progress (limits.max_handshakes_per_ip), by peer. */
  const handshaking = new Map<string, () => void>();
  /**
   * The client behind each raw connection and the release of its gate admission, for the session
   * that starts after the TLS handshake.
   */
  const clients = new Map<string, { readonly origin: ClientOrigin; readonly release: () => void; readonly raw: Socket }>();
  /** A handshake is over (done, failed, or its connection closed): its place, timing and client go. */
  const handshakeDone = (key: string): void => {
    handshaking.get(key)?.();
    handshaking.delete(key);
    acceptedAt.delete(key);
    clients.delete(key);
  };
  // Half-open on the STLS port: a client that sends its last commands and shuts down its side
  // still gets the replies (and its QUIT still commits); the session ends the socket itself. Not
  // on the implicit-TLS port: a half-open socket there would outlive a failed handshake.
  // Paused on connect: a connection the gate refuses is never read (no readStart, no read of the
  // ClientHello it has sent), only closed; an admitted one is read by its session, its TLS
  // socket or its PROXY header reader, each of which starts the reading itself.
  const server: Server = createPlainServer({ allowHalfOpen: config.kind === 'stls', pauseOnConnect: true });
  // The implicit-TLS server never listens: the plain server above accepts, and a connection is
  // handed to it (its 'connection' event) once admitted, after its PROXY header if there is one,
  // so no TLS work is ever spent on a connection that is refused.
  const tlsServer: TlsServer | undefined =
    config.kind === 'tls'
      ? createTlsServer({ ...tls.serverOptions, ALPNCallback: selectPop3Alpn, SNICallback: tls.sniCallback }, (socket) => {
          const raw = rawSocketOf(socket);
          const key = peerKey(raw);
          const seconds = handshakeSeconds(raw);
          const pending = clients.get(key);
          const client = pending?.origin ?? directOrigin(raw);
          const release = pending?.release ?? (() => undefined);
          handshakeDone(key);
          metrics.tlsHandshake(config.name, 'success', socket.getProtocol() ?? undefined, seconds);
          onAccept(socket, true, config, client, release);
        })
      : undefined;

  const bursts = new RefusalBursts({
    windowMs: REFUSAL_LOG_WINDOW_MS,
    maxKeys: MAX_REFUSAL_LOG_ADDRESSES,
    // The tail of a burst: how many were refused after its last line, once its window is over.
    ended: ({ reason, peer, refusedQuietly }) => log.info({ listener: config.name, peer, reason, refusedQuietly }, 'connection refusals ended'),
  });
  server.once('close', () => bursts.close());
  // The raw TCP socket, on TLS listeners too: the place to refuse cheaply.
  const refuse = (socket: Socket, reason: ConnectionRefusal, client: RefusedClient, detail?: string): void => {
    metrics.connectionRefused(config.name, reason);
    const burst = LOGGED_PER_BURST.has(reason) ? bursts.note(reason, client.address) : undefined;
    if (burst?.log === false) {
      // Counted above; its line is the burst's.
    } else {
      const quietly = burst?.refusedQuietly ?? 0;
      const fields = { listener: config.name, peer: client.address, via: client.via, reason, detail, ...(quietly > 0 ? { refusedQuietly: quietly } : {}) };
      // A load balancer's plain TCP health check opens and closes without a byte: not news.
      if (reason === 'proxy_closed') log.debug(fields, 'connection refused');
      else log.info(fields, 'connection refused');
    }
    socket.on('error', () => undefined);
    const reply = refusalReply(config.kind, reason);
    if (reply === undefined) {
      // The refusals an address repeats as fast as it reconnects wait (bounded) before the close;
      // the process bounds' never do: they hold a descriptor exactly when the process is full.
      if (LOGGED_PER_BURST.has(reason) && deps.hold !== undefined) deps.hold.hold(socket, () => socket.destroy());
      else socket.destroy();
      return;
    }
    socket.end(line(reply));
    socket.destroySoon();
  };
  /**
   * Raw sockets whose handshake was closed to make room: their TLS socket then reports a hang-up
   * ('tlsClientError', ECONNRESET) that is not news, the eviction was logged and counted already.
   */
  const evicted = new WeakSet<Socket>();
  /** A handshake closed to make room for a newer one: what a failed handshake gets, with its own reason. */
  const evictHandshake = (socket: Socket, client: ClientOrigin): void => {
    metrics.tlsHandshake(config.name, 'evicted', undefined, handshakeSeconds(socket));
    log.info({ listener: config.name, peer: client.address, via: client.via, reason: 'evicted' }, 'TLS handshake failed');
    // Its gate place too, now: limits.max_sessions may have evicted it for the connection waiting.
    clients.get(peerKey(socket))?.release();
    handshakeDone(peerKey(socket));
    evicted.add(socket);
    socket.destroy();
  };
  /**
   * `address` is the client's; `origin` the whole of it when a PROXY header gave it. A direct
   * client's is read from the socket only once the gate has admitted it: a refusal needs the
   * peer's address alone, and the local one is a system call more for each refused connection.
   */
  const admit = (socket: Socket, address: string, origin?: ClientOrigin): void => {
    const admission = gate.admit(address, deps.evictIdleSession, deps.returning?.accountOf(address));
    if (admission.kind === 'refused') return refuse(socket, admission.reason, origin ?? { address, via: undefined });
    const client = origin ?? directOrigin(socket);
    // TCP_NODELAY on the raw TCP handle (under the TLS socket, and still there after STLS): each
    // reply is written whole, so Nagle has nothing to merge, and holding a reply's tail until the
    // client's delayed ACK cost ~40 ms a message. Set here, not by the server for every
    // connection: a refused one would pay a system call for nothing.
    socket.setNoDelay(true);
    if (tlsServer !== undefined) {
      const handshake = tls.handshakes.admit(client.address, () => evictHandshake(socket, client));
      if (handshake.kind === 'refused') {
        admission.release();
        return refuse(socket, handshake.reason, client);
      }
      const key = peerKey(socket);
      handshaking.set(key, handshake.release);
      acceptedAt.set(key, performance.now());
      clients.set(key, { origin: client, release: admission.release, raw: socket });
      // One plain listener ('close' comes once), not a `once` wrapper each: an idle session keeps
      // whatever its close listeners hold, so this one holds the key and the admission, not the
      // handshake's place (its release and eviction, done with once the handshake is). The
      // entries are this connection's until the handshake is done (they go then); afterwards
      // they may be a new connection's from the same port.
      socket.on('close', function (this: Socket) {
        if (clients.get(key)?.raw === this) handshakeDone(key);
        admission.release();
      });
    } else {
      socket.on('close', admission.release);
    }
    metrics.connectionOpened(config.name, config.kind === 'tls' ? 'implicit' : 'starttls');
    // A plain listener's session starts now; a TLS listener's once the handshake is done. A
    // socket paused for its PROXY header flows again once the reader is attached.
    if (tlsServer !== undefined) {
      // The TLS socket takes over the raw one, and the bytes already read from it (initRead in
      // Node's _tls_wrap), so the raw socket is not resumed here.
      tlsServer.emit('connection', socket);
      return;
    }
    onAccept(socket, false, config, client, admission.release);
    socket.resume();
  };
  server.on('connection', (socket: Socket) => {
    const proxy = config.proxyProtocol === undefined ? undefined : deps.proxy;
    // Taken now: once the peer has hung up, the socket no longer knows its address.
    const address = normaliseAddress(socket.remoteAddress ?? '');
    if (proxy === undefined) return admit(socket, address);
    void readProxyHeader(socket, proxy.trusted, proxy.timeoutMs, proxy.waits).then((intake) => {
      if (intake.kind === 'refused') return refuse(socket, intake.reason, { address, via: undefined }, intake.detail);
      // Shutdown began while the header was on its way: no session may start after it.
      if (!server.listening) socket.destroy();
      if (socket.destroyed) return;
      admit(socket, intake.origin.address, intake.origin);
    });
  });
  if (tlsServer !== undefined) {
    // A reload swaps the default certificate (clients without SNI) and the ticket keys; the SNI
    // callback reads the provider on every handshake. Established connections are untouched.
    const unsubscribe = tls.onReplace((material) => {
      tlsServer.setSecureContext(material.serverOptions);
      if (material.ticketKeys !== undefined) tlsServer.setTicketKeys(material.ticketKeys);
    });
    server.once('close', unsubscribe);
    tlsServer.on('tlsClientError', (error: Error & { code?: string }, socket: TLSSocket) => {
      if (evicted.has(rawSocketOf(socket))) return void socket.destroy();
      const timedOut = error.code === 'ERR_TLS_HANDSHAKE_TIMEOUT';
      metrics.tlsHandshake(config.name, timedOut ? 'timeout' : 'failure', undefined, handshakeSeconds(socket));
      const client = clients.get(peerKey(socket))?.origin;
      // info, as the session-closed line every other failed connection ends with: garbage on this
      // port (HTTP, a scanner, a stalled handshake) is otherwise invisible at the default level.
      log.info({ listener: config.name, peer: client?.address ?? socket.remoteAddress, via: client?.via, code: error.code, reason: error.message }, 'TLS handshake failed');
      // With a 'tlsClientError' listener, Node leaves the socket open (even on handshakeTimeout):
      // closing it is ours to do, or stalled handshakes pile up forever.
      socket.destroy();
    });
  }
  return new Promise<BoundServer>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: config.host, port: config.port }, () => {
      server.off('error', reject);
      server.on('error', (error) => log.error({ err: error, listener: config.name }, 'listener error'));
      resolve({ config, server, address: server.address() as AddressInfo });
    });
  });
}
