import { createServer as createPlainServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import type { ListenerConfig } from '../config/types.js';
import type { TlsProvider } from './tls-provider.js';
import type { Logger } from '../observability/log.js';
import type { ConnectionRefusal, Metrics } from '../observability/metrics.js';
import type { ConnectionGate } from './connection-gate.js';
import { normaliseAddress } from './addresses.js';
import { POP3_ALPN } from './starttls.js';
import { Reply, line } from '../pop3/replies.js';

/** What a listener hands over for every accepted client: the socket, and whether it is TLS already. */
export type AcceptHandler = (socket: Socket | TLSSocket, secure: boolean, listener: ListenerConfig) => void;

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
 * What a refused client is told. The process-wide bounds and the handshake bounds close the
 * connection without a byte on the implicit-TLS port, where the client waits for a ServerHello and
 * a POP3 line would only be a TLS error; there is nothing to spend under load. The per-address
 * refusals keep their `-ERR` line on both ports, for the people who debug with openssl s_client.
 */
function refusalReply(kind: ListenerConfig['kind'], reason: ConnectionRefusal): string | undefined {
  switch (reason) {
    case 'denied':
      return Reply.connectionDenied;
    case 'too_many_sessions':
    case 'too_many_connections':
      return Reply.tooManyConnections;
    case 'max_sessions':
      return kind === 'tls' ? undefined : Reply.serverBusy;
    case 'too_many_handshakes':
    case 'max_handshakes':
      return undefined;
  }
}

/**
 * Binds one listener. Every TCP connection first passes the gate (deny list, per-IP and process bounds)
 * before any TLS or POP3 work. Implicit-TLS listeners hand over sockets after the handshake
 * (popwarden's greeting follows it, RFC 8314 §3); STLS listeners hand over the plain socket.
 * Rejects with the bind error (EADDRINUSE, EACCES) so startup can fail as a whole.
 */
export function bindListener(config: ListenerConfig, deps: ListenerDependencies, onAccept: AcceptHandler): Promise<BoundServer> {
  const { tls, log, metrics, gate } = deps;
  /** Release functions of this listener's handshakes in progress (limits.max_handshakes_per_ip), by peer. */
  const handshaking = new Map<string, () => void>();
  // TCP_NODELAY on every accepted socket, set by the server on the raw TCP handle (under the
  // TLS socket, and still there after STLS): each reply is written whole, so Nagle has nothing
  // to merge, and holding a reply's tail until the client's delayed ACK cost ~40 ms a message.
  const server: Server =
    config.kind === 'tls'
      ? createTlsServer({ ...tls.serverOptions, ALPNProtocols: POP3_ALPN, SNICallback: tls.sniCallback, noDelay: true }, (socket) => {
          handshaking.get(peerKey(socket))?.();
          handshaking.delete(peerKey(socket));
          metrics.tlsHandshake(config.name, 'success', socket.getProtocol() ?? undefined, handshakeSeconds(socket));
          onAccept(socket, true, config);
        })
      : // Half-open: a client that sends its last commands and shuts down its side still gets the
        // replies (and its QUIT still commits); the session ends the socket itself. Not on the
        // implicit-TLS server: a half-open socket there would outlive a failed handshake.
        createPlainServer({ allowHalfOpen: true, noDelay: true });

  // 'connection' is the raw TCP socket, on TLS servers too: the place to refuse cheaply.
  const refuse = (socket: Socket, reason: ConnectionRefusal): void => {
    metrics.connectionRefused(config.name, reason);
    log.info({ listener: config.name, peer: socket.remoteAddress, reason }, 'connection refused');
    socket.on('error', () => undefined);
    const reply = refusalReply(config.kind, reason);
    if (reply === undefined) {
      socket.destroy();
      return;
    }
    socket.end(line(reply));
    socket.destroySoon();
  };
  server.on('connection', (socket: Socket) => {
    const address = normaliseAddress(socket.remoteAddress ?? '');
    const admission = gate.admit(address);
    if (admission.kind === 'refused') return refuse(socket, admission.reason);
    const key = peerKey(socket);
    if (config.kind === 'tls') {
      const handshake = tls.handshakes.admit(address);
      if (handshake.kind === 'refused') {
        admission.release();
        return refuse(socket, handshake.reason);
      }
      handshaking.set(key, handshake.release);
      socket.once('close', handshake.release);
    }
    acceptedAt.set(key, performance.now());
    socket.once('close', () => {
      acceptedAt.delete(key);
      handshaking.delete(key);
      admission.release();
    });
    metrics.connectionOpened(config.name, config.kind === 'tls' ? 'implicit' : 'starttls');
    // A plain listener's session starts now; a TLS listener's once the handshake is done.
    if (config.kind === 'stls') onAccept(socket, false, config);
  });
  if (config.kind === 'tls') {
    const tlsServer = server as TlsServer;
    // A reload swaps the default certificate (clients without SNI) and the ticket keys; the SNI
    // callback reads the provider on every handshake. Established connections are untouched.
    const unsubscribe = tls.onReplace((material) => {
      tlsServer.setSecureContext(material.serverOptions);
      if (material.ticketKeys !== undefined) tlsServer.setTicketKeys(material.ticketKeys);
    });
    server.once('close', unsubscribe);
    server.on('tlsClientError', (error: Error & { code?: string }, socket: TLSSocket) => {
      const timedOut = error.code === 'ERR_TLS_HANDSHAKE_TIMEOUT';
      metrics.tlsHandshake(config.name, timedOut ? 'timeout' : 'failure', undefined, handshakeSeconds(socket));
      // info, as the session-closed line every other failed connection ends with: garbage on this
      // port (HTTP, a scanner, a stalled handshake) is otherwise invisible at the default level.
      log.info({ listener: config.name, peer: socket.remoteAddress, code: error.code, reason: error.message }, 'TLS handshake failed');
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
