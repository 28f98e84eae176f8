import { once } from 'node:events';
import { createServer, connect, type Socket } from 'node:net';

/**
 * A connected loopback TCP pair for unit tests of code that owns one end of a connection:
 * `ours` (the end given to the code under test) and `peer` (the test's), and how to close both.
 */
export async function tcpPair(): Promise<{ ours: Socket; peer: Socket; close: () => void }> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const ours = connect((server.address() as { port: number }).port, '127.0.0.1');
  await once(ours, 'connect');
  const [peer] = await accepted;
  return { ours, peer, close: () => (ours.destroy(), peer.destroy(), server.close()) };
}
