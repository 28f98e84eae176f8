/**
 * Two connected in-memory sockets, for driving a Session without the kernel (Node 20 has no
 * stream.duplexPair). Bytes written on one side arrive as 'data' on the other in the next tick,
 * in the chunks they were written in; end() is a FIN (the peer gets 'end'), destroy() a hang-up
 * (the peer gets 'end' and 'close'). What a session reads off a socket besides the stream API,
 * the peer's address, is there too. holdWindow(octets) plays a client whose receive window fills:
 * once more than `octets` have come, the bytes still reach it but the peer's writes no longer
 * complete, so they pile up on the peer's side (writableNeedDrain) until openWindow().
 */
import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';

/** One end of a MemorySocketPair: a Duplex with the address fields a session reads. */
export class MemorySocket extends Duplex {
  readonly remoteAddress: string;
  readonly remotePort: number;
  #peer: MemorySocket | undefined;
  /** What the window still takes (octets) and the peer's write callbacks held; undefined while it is open. */
  #window: { room: number; readonly held: (() => void)[] } | undefined;

  constructor(remoteAddress: string, remotePort: number) {
    // allowHalfOpen as on popwarden's plaintext listener: a FIN from the peer ends its sending only.
    super({ allowHalfOpen: true });
    this.remoteAddress = remoteAddress;
    this.remotePort = remotePort;
  }

  /** Connects two sockets to each other. */
  static connect(a: MemorySocket, b: MemorySocket): void {
    a.#peer = b;
    b.#peer = a;
  }

  /** This socket, typed as what a Session takes; it implements what a session uses of one. */
  asSocket(): Socket {
    return this as unknown as Socket;
  }

  /** From now on, the peer's writes complete until more than `octets` have come; later ones reach this socket but do not complete. */
  holdWindow(octets: number): void {
    this.#window ??= { room: octets, held: [] };
  }

  /** Completes the peer's held writes, and every write from now on again (the peer drains). */
  openWindow(): void {
    const held = this.#window?.held ?? [];
    this.#window = undefined;
    for (const ack of held) ack();
  }

  override _read(): void {
    // Bytes are pushed by the peer's writes; nothing to fetch.
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const peer = this.#peer;
    // A copy: the writer may reuse its buffer (sessions zero credentials after use).
    const copy = Buffer.from(chunk);
    setImmediate(() => {
      // Whether the window takes the bytes is decided as they arrive, not after the peer has read them.
      const window = peer === undefined ? undefined : peer.#window;
      if (peer !== undefined && !peer.destroyed && !peer.readableEnded) peer.push(copy);
      if (window !== undefined && (window.room -= copy.length) < 0) window.held.push(() => callback());
      else callback();
    });
  }

  override _final(callback: (error?: Error | null) => void): void {
    // After the writes already queued: setImmediate keeps their order.
    const peer = this.#peer;
    setImmediate(() => {
      if (peer !== undefined) peer.#finishReading();
      callback();
    });
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const peer = this.#peer;
    setImmediate(() => {
      if (peer !== undefined) peer.#finishReading();
      // A hang-up closes both ends, as a TCP connection would once both sides saw it.
      if (peer !== undefined && !peer.destroyed && !peer.allowHalfOpen) peer.destroy();
    });
    callback(error);
  }

  #finishReading(): void {
    if (!this.readableEnded && !this.destroyed) this.push(null);
  }
}

/** A connected pair: `client` is the side a test drives, `server` the one handed to a Session. */
export function memorySocketPair(clientAddress = '127.0.0.1', clientPort = 40_000): { client: MemorySocket; server: MemorySocket } {
  const client = new MemorySocket('127.0.0.1', 110);
  const server = new MemorySocket(clientAddress, clientPort);
  MemorySocket.connect(client, server);
  return { client, server };
}
