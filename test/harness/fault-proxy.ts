/**
 * A scriptable TCP fault proxy for the fault-injection suite: it sits between popwarden and a real
 * peer (Dovecot, redis-server), passes bytes through unchanged, and on cue misbehaves the way a
 * broken server or network does: delay, stall, reset, half-close, truncate, corrupt a byte, or
 * accept and never answer.
 *
 * A fault is armed for the next connection (a login step, a command) or for every connection,
 * open and future (Redis). It is cued by a command line the proxy sees going to the server
 * (`trigger`), or, without one, from the connection's first byte (the greeting); it then acts on
 * the server's reply bytes, after `afterBytes` of them have passed. Acting on the reply, not on
 * the command, makes the outcome deterministic: the server has already done what the command
 * asked (a QUIT has committed) before the fault hits.
 */
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export const FAULT_KINDS = ['delay', 'stall', 'reset', 'half-close', 'truncate', 'corrupt', 'never-answer'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** A predicate over a command line going to the server (without its line end), and the line before it. */
export type Trigger = (line: string, previous: string | undefined) => boolean;

export interface Fault {
  readonly kind: FaultKind;
  /** Cue: a line going to the server. None: from the first byte of the connection (the greeting). */
  readonly trigger?: Trigger;
  /** Reply bytes passed on unchanged before the fault acts (default 0). */
  readonly afterBytes?: number;
  /** delay only: how long the reply is held back (default 300 ms). */
  readonly delayMs?: number;
  /** corrupt only: flip this bit mask into the byte instead of writing `*` over it (a bad bit in memory or on a link). */
  readonly flipBits?: number;
}

/** What a fault did, for the test to await and report. */
export interface FaultFired {
  readonly kind: FaultKind;
  /** Reply bytes that had reached the proxy's client before the fault acted. */
  readonly passedBytes: number;
}

/** A trigger on the command's verb (and, if given, its exact arguments). */
export function onCommand(verb: string, args?: string): Trigger {
  const wanted = args === undefined ? undefined : `${verb} ${args}`;
  return (line) => (wanted === undefined ? line === verb || line.startsWith(`${verb} `) : line === wanted);
}

/**
 * A trigger on a Redis command by name (any case). RESP sends the name as a bulk string, a line
 * of its own after its `$length` line, so a key or value that happens to read the same (always
 * prefixed here) cannot cue it unless it follows a length line too.
 */
export function onRedisCommand(name: string): Trigger {
  const wanted = name.toLowerCase();
  return (line, previous) => line.toLowerCase() === wanted && previous !== undefined && previous.startsWith('$');
}

/**
 * A trigger on a Redis Lua script (EVAL), by its exact text: sent as a bulk string, a line of its
 * own after its `$length` line (scripts without line breaks only).
 */
export function onRedisScript(script: string): Trigger {
  return (line, previous) => line === script && previous !== undefined && previous.startsWith('$');
}

/** A trigger on the line sent right after a command with this verb (a SASL response after AUTH). */
export function afterCommand(verb: string): Trigger {
  return (_line, previous) => previous !== undefined && (previous === verb || previous.startsWith(`${verb} `));
}

const CORRUPT_BYTE = 0x2a; // '*': turns "+OK" and "-ERR" into neither

interface Armed {
  readonly fault: Fault;
  readonly fired: (report: FaultFired) => void;
}

/** One proxied connection: `down` is the side of the proxy's client (popwarden), `up` the server. */
class Pipe {
  readonly #down: Socket;
  #up: Socket | undefined;
  #armed: Armed | undefined;
  /** True once the trigger was seen (or from the start without one): reply bytes are counted. */
  #cued = false;
  #replyBytes = 0;
  /** Server to client: 'pass' until the fault acts; then held back (delay) or dropped. */
  #mode: 'pass' | 'hold' | 'drop' = 'pass';
  /** Client to server: forwarded unless the fault cut that direction too. */
  #toServer = true;
  #held: Buffer[] = [];
  #upClosed = false;
  #stalled = false;
  #partialLine = '';
  #previousLine: string | undefined;

  constructor(down: Socket, target: { host: string; port: number }, armed: Armed | undefined, onGone: () => void) {
    this.#down = down;
    this.#armed = armed;
    down.on('error', () => undefined);
    down.on('close', () => {
      this.#up?.destroy();
      onGone();
    });
    if (armed !== undefined && armed.fault.trigger === undefined) {
      this.#cued = true;
      if (armed.fault.kind === 'never-answer') {
        // Accepted, and nothing ever: no connection to the server, no byte back.
        this.#act(Buffer.alloc(0));
        down.resume();
        return;
      }
    }
    const up = connect(target);
    up.setNoDelay(true);
    down.setNoDelay(true);
    this.#up = up;
    up.on('error', () => undefined);
    // A server that answers and hangs up (QUIT) must not lose a reply the proxy still holds back.
    // A stalled server stays stalled even once it hangs up: the client only ever sees silence.
    up.on('close', () => {
      if (this.#mode === 'hold') this.#upClosed = true;
      else if (!this.#stalled) down.destroy();
    });
    up.on('end', () => {
      if (this.#mode === 'pass') down.end();
    });
    down.on('end', () => {
      if (this.#toServer) up.end();
    });
    down.on('data', (chunk: Buffer) => this.#fromClient(chunk));
    up.on('data', (chunk: Buffer) => this.#fromServer(chunk));
  }

  /**
   * Arms a fault on an open connection, cued at once: the faults that need no reply bytes (a
   * reset, a hang-up, never answering) act now, on a connection that may be idle; the others act
   * on the next bytes the server sends.
   */
  armNow(armed: Armed): void {
    this.#armed = armed;
    this.#replyBytes = 0;
    // With a trigger the fault waits for its command, on this connection as on a new one.
    this.#cued = armed.fault.trigger === undefined;
    if (!this.#cued) return;
    const { kind, afterBytes = 0 } = armed.fault;
    if (kind === 'never-answer' || (afterBytes === 0 && (kind === 'reset' || kind === 'truncate' || kind === 'half-close'))) {
      this.#act(Buffer.alloc(0));
    }
  }

  destroy(): void {
    this.#down.destroy();
    this.#up?.destroy();
  }

  #fromClient(chunk: Buffer): void {
    if (!this.#toServer) return;
    const carried = this.#partialLine.length;
    const text = this.#partialLine + chunk.toString('latin1');
    let forwardUpTo = chunk.length;
    let start = 0;
    for (let lf = text.indexOf('\n'); lf !== -1; lf = text.indexOf('\n', start)) {
      const raw = text.slice(start, lf);
      const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
      const trigger = this.#armed?.fault.trigger;
      if (!this.#cued && trigger !== undefined && trigger(line, this.#previousLine)) {
        this.#cued = true;
        if (this.#armed?.fault.kind === 'never-answer') {
          // The command never reaches the server, and nothing comes back.
          forwardUpTo = Math.max(0, start - carried);
          this.#act(Buffer.alloc(0));
          break;
        }
      }
      this.#previousLine = line;
      start = lf + 1;
    }
    this.#partialLine = text.slice(start).slice(-1024);
    if (forwardUpTo > 0) this.#up?.write(chunk.subarray(0, forwardUpTo));
  }

  #fromServer(chunk: Buffer): void {
    if (this.#mode === 'drop') return;
    if (this.#mode === 'hold') {
      this.#held.push(chunk);
      return;
    }
    if (!this.#cued || this.#armed === undefined) {
      this.#down.write(chunk);
      return;
    }
    const { fault } = this.#armed;
    const after = fault.afterBytes ?? 0;
    const room = after - this.#replyBytes;
    if (room >= chunk.length) {
      this.#replyBytes += chunk.length;
      this.#down.write(chunk);
      return;
    }
    if (room > 0) this.#down.write(chunk.subarray(0, room));
    this.#replyBytes = after;
    this.#act(chunk.subarray(Math.max(0, room)));
  }

  /** The fault acts; `rest` is the reply from the fault's byte on. */
  #act(rest: Buffer): void {
    const armed = this.#armed!;
    const { fault } = armed;
    this.#armed = undefined; // one shot per connection
    armed.fired({ kind: fault.kind, passedBytes: this.#replyBytes });
    const up = this.#up;
    switch (fault.kind) {
      case 'delay': {
        this.#mode = 'hold';
        this.#held = rest.length > 0 ? [rest] : [];
        setTimeout(() => {
          if (this.#mode !== 'hold') return;
          this.#mode = 'pass';
          for (const held of this.#held) this.#down.write(held);
          this.#held = [];
          if (this.#upClosed) this.#down.end();
        }, fault.delayMs ?? 300);
        return;
      }
      case 'stall':
        // The server goes on reading what it is sent; its replies are lost from here on.
        this.#mode = 'drop';
        this.#stalled = true;
        return;
      case 'never-answer':
        this.#mode = 'drop';
        this.#toServer = false;
        return;
      case 'reset':
        // An RST (SO_LINGER 0). A reader on Linux that still has the bytes before it unread
        // sees the end of the stream rather than ECONNRESET: both are a hang-up to popwarden.
        this.#mode = 'drop';
        this.#toServer = false;
        this.#down.resetAndDestroy();
        up?.destroy();
        return;
      case 'half-close':
        // FIN towards the client; the client may still write, and the server still reads it.
        this.#mode = 'drop';
        this.#down.end();
        return;
      case 'truncate':
        this.#mode = 'drop';
        this.#toServer = false;
        this.#down.end();
        up?.end();
        return;
      case 'corrupt': {
        if (rest.length === 0) {
          // The byte to corrupt has not arrived yet: corrupt the first one that does.
          this.#armed = armed;
          return;
        }
        const copy = Buffer.from(rest);
        copy[0] = fault.flipBits === undefined ? CORRUPT_BYTE : copy[0]! ^ fault.flipBits;
        this.#down.write(copy);
        return;
      }
    }
  }
}

/** A running fault proxy in front of `target`. */
export interface FaultProxy {
  readonly host: string;
  readonly port: number;
  /**
   * Arms `fault` for the next connection accepted; resolves when it has acted. Only one fault is
   * pending at a time.
   */
  armNext(fault: Fault): Promise<FaultFired>;
  /**
   * Arms `fault` on every open connection and on every new one, until clear(): once on each. With
   * no trigger it is cued at once (see Pipe.armNow): Redis outages, a backend that hangs up on an
   * idle session. With one it waits for that command on each connection, so it hits the reply to
   * that command, not whatever a connection happens to be answering (a ping, a reconnect's
   * CLIENT SETINFO).
   */
  armAll(fault: Fault): void;
  /** Disarms armAll; connections already broken stay broken (the client reconnects). */
  clear(): void;
  /** Closes every connection and the listener. */
  stop(): Promise<void>;
}

/** Starts a fault proxy on a free loopback port in front of `target`. */
export async function startFaultProxy(target: { host: string; port: number }): Promise<FaultProxy> {
  const pipes = new Set<Pipe>();
  let next: Armed | undefined;
  let everyone: Fault | undefined;
  const armedForAll = (fault: Fault): Armed => ({ fault, fired: () => undefined });
  const server: Server = createServer((down) => {
    // A fault for everyone is cued at once; the next connection's fault waits for its cue.
    const forThisOne = everyone === undefined ? next : undefined;
    if (forThisOne !== undefined) next = undefined;
    const pipe = new Pipe(down, target, forThisOne, () => pipes.delete(pipe));
    if (everyone !== undefined) pipe.armNow(armedForAll(everyone));
    pipes.add(pipe);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    host: '127.0.0.1',
    port,
    armNext: (fault) =>
      new Promise<FaultFired>((resolve) => {
        if (next !== undefined) throw new Error('a fault is already armed for the next connection');
        next = { fault, fired: resolve };
      }),
    armAll(fault) {
      everyone = fault;
      for (const pipe of pipes) pipe.armNow(armedForAll(fault));
    },
    clear() {
      everyone = undefined;
      next = undefined;
    },
    async stop() {
      for (const pipe of pipes) pipe.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
