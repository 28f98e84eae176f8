import { createServer as createPlainServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import type { ListenerConfig } from '../config/types.js';
import type { TlsMaterial } from './tls-context.js';
import type { Logger } from '../observability/log.js';

/** What a listener hands over for every accepted client: the socket, and whether it is TLS already. */
export type AcceptHandler = (socket: Socket | TLSSocket, secure: boolean, listener: ListenerConfig) => void;

export interface BoundServer {
  readonly config: ListenerConfig;
  readonly server: Server;
  readonly address: AddressInfo;
}

/**
 * Binds one listener. Implicit-TLS listeners hand over sockets after the handshake (popwarden's
 * greeting follows the handshake, RFC 8314 §3); STLS listeners hand over the plain socket.
 * Rejects with the bind error (EADDRINUSE, EACCES) so startup can fail as a whole.
 */
export function bindListener(
  config: ListenerConfig,
  tls: TlsMaterial,
  log: Logger,
  onAccept: AcceptHandler,
): Promise<BoundServer> {
  const server: Server =
    config.kind === 'tls'
      ? createTlsServer(tls.serverOptions, (socket) => onAccept(socket, true, config))
      : createPlainServer((socket) => onAccept(socket, false, config));
  if (config.kind === 'tls') {
    server.on('tlsClientError', (error: Error & { code?: string }, socket: TLSSocket) => {
      log.debug({ listener: config.name, peer: socket.remoteAddress, code: error.code, reason: error.message }, 'TLS handshake failed');
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
