/**
 * A scripted fake POP3 backend for the hostile cases no real server produces (RST mid-body,
 * over-long lines, lying greetings). Each accepted connection runs the test's script; every byte
 * the connection received is kept for assertions.
 */
import net from 'node:net';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { dotStuff, sampleMaildrop } from './maildrop.js';
import { ByteInbox } from './inbox.js';
import { listenOnFreePort } from './ports.js';

/** One accepted connection, as the script sees it. */
export interface FakeConn {
  /** 1-based, in accept order. */
  readonly id: number;
  /** Writes raw bytes (strings as UTF-8; no CRLF added); resolves once handed to the kernel (awaiting is optional). */
  write(bytes: string | Buffer): Promise<void>;
  /** Next line from the peer without its CRLF (or LF); rejects when the peer closes first or after `timeoutMs`. */
  readLine(timeoutMs?: number): Promise<string>;
  /** Same as readLine, as bytes. */
  readLineBytes(timeoutMs?: number): Promise<Buffer>;
  /** Half-closes (FIN) after pending writes. */
  end(): void;
  /** Closes abruptly: an RST where the platform supports resetAndDestroy(). */
  destroy(): void;
  /** Every byte received on this connection so far. */
  received(): Buffer;
  /** What the peer sent, for reads beyond lines (the same bytes readLine reads). */
  readonly inbox: ByteInbox;
  /** Every line returned by readLine so far. */
  lines(): string[];
  /** True once the socket is closed. */
  readonly closed: boolean;
  /** Resolves when the socket has closed. */
  readonly whenClosed: Promise<void>;
  /** Resolves when the script has returned (or thrown: `scriptError` then holds the error). */
  readonly done: Promise<void>;
  readonly scriptError: Error | undefined;
}

/** A running fake backend. */
export interface FakeBackend {
  readonly host: string;
  readonly port: number;
  /** Every connection accepted so far, in accept order. */
  connections(): FakeConn[];
  /** Stops listening and destroys every connection. */
  stop(): Promise<void>;
}

/** The per-connection behaviour of a fake backend. */
export type FakeScript = (conn: FakeConn) => Promise<void> | void;

function makeConn(id: number, socket: net.Socket, script: FakeScript): FakeConn {
  const inbox = new ByteInbox(socket);
  const lines: string[] = [];
  let closed = false;
  let scriptError: Error | undefined;
  const whenClosed = new Promise<void>((resolve) =>
    socket.once('close', () => {
      closed = true;
      resolve();
    }),
  );
  socket.on('error', () => undefined);

  const readLineBytes = async (timeoutMs = 30_000): Promise<Buffer> => {
    const line = await inbox.readLine(timeoutMs);
    if (line === null) throw new Error(`fake backend connection ${id}: peer closed before a full line`);
    lines.push(line.toString('utf8'));
    return line;
  };

  const conn: FakeConn = {
    id,
    write(bytes) {
      return new Promise<void>((resolve) => {
        if (socket.destroyed || !socket.writable) resolve();
        else socket.write(bytes, () => resolve());
      });
    },
    readLineBytes,
    readLine: async (timeoutMs) => (await readLineBytes(timeoutMs)).toString('utf8'),
    end() {
      socket.end();
    },
    destroy() {
      const s = socket as net.Socket & { resetAndDestroy?: () => net.Socket };
      if (typeof s.resetAndDestroy === 'function') s.resetAndDestroy();
      else socket.destroy();
    },
    received: () => Buffer.from(inbox.all()),
    inbox,
    lines: () => [...lines],
    get closed() {
      return closed;
    },
    whenClosed,
    done: Promise.resolve(),
    get scriptError() {
      return scriptError;
    },
  };
  const done = (async () => {
    try {
      await script(conn);
    } catch (e) {
      scriptError = e as Error;
      socket.destroy();
    }
  })();
  Object.defineProperty(conn, 'done', { value: done });
  return conn;
}

/** Starts a fake backend on 127.0.0.1 (kernel-chosen port) that runs `script` for each connection. */
export async function startFakeBackend(script: FakeScript): Promise<FakeBackend> {
  const host = '127.0.0.1';
  const conns: FakeConn[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    conns.push(makeConn(conns.length + 1, socket, script));
  });
  const port = await listenOnFreePort(server, host);
  return {
    host,
    port,
    connections: () => [...conns],
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------------------------------------
// legacyScript: a small, correct RFC 1939 server to start from

/** A mailbox the legacy script serves. */
export interface LegacyAccount {
  pass: string;
  /** Messages with CRLF line ends (un-stuffed); the script dot-stuffs them on RETR/TOP. */
  messages: readonly Buffer[];
  /** UIDLs per message (default `uid-<user>-<n>`). */
  uidls?: readonly string[];
}

/** What a command hook sees. */
export interface LegacyCommand {
  readonly conn: FakeConn;
  readonly line: string;
  /** Upper-cased verb. */
  readonly verb: string;
  readonly args: string[];
  readonly state: 'AUTHORIZATION' | 'TRANSACTION';
  /** The logged-in user in TRANSACTION. */
  readonly user: string | undefined;
}

/** Options of legacyScript; every field has a default that makes a plain correct server. */
export interface LegacyOptions {
  /** Accounts by user name (default: the sample maildrop's alice and bob). */
  accounts?: Record<string, LegacyAccount>;
  /** Greeting text after `+OK ` (default "POP3 server ready"). */
  greeting?: string;
  /** Put an APOP timestamp in the greeting: true = a fresh `<…@fake.popwarden.test>`, a string = exactly that. */
  apop?: boolean | string;
  /** CAPA lines; false = answer CAPA with -ERR (pre-RFC 2449 server). Default: TOP, UIDL, USER (if on), SASL. */
  capa?: readonly string[] | false;
  /** Accept USER/PASS (default true). */
  userPass?: boolean;
  /** Offer and accept AUTH CRAM-MD5 (default false). */
  cramMd5?: boolean;
  /** Offer and accept AUTH PLAIN (default false). */
  authPlain?: boolean;
  /** Die in the middle of RETR `message`: after `afterBytes` bytes of the stuffed body, FIN ('end') or RST ('destroy', the default). */
  cutRetr?: { message: number; afterBytes: number; how?: 'end' | 'destroy' };
  /** Delay before answering a failed login, ms (default 0). */
  authFailureDelayMs?: number;
  /** Called for every command first; return true when it has answered it itself. */
  onCommand?: (cmd: LegacyCommand) => boolean | void | Promise<boolean | void>;
}

/** A fresh APOP timestamp in RFC 822 msg-id form. */
function apopTimestamp(): string {
  return `<${process.pid}.${randomBytes(6).toString('hex')}@fake.popwarden.test>`;
}

function defaultAccounts(): Record<string, LegacyAccount> {
  const { alice, bob } = sampleMaildrop();
  const acct = (a: typeof alice): LegacyAccount => ({
    pass: a.pass,
    messages: a.messages.map((m) => m.bytes),
    uidls: a.messages.map((m) => m.uidl),
  });
  return { alice: acct(alice), bob: acct(bob) };
}

/** The first `lines` body lines of a message plus its header (TOP, RFC 1939 §7). */
function topOf(msg: Buffer, lines: number): Buffer {
  const sep = msg.indexOf('\r\n\r\n');
  if (sep < 0) return msg;
  let end = sep + 4;
  for (let i = 0; i < lines && end < msg.length; i++) {
    const nl = msg.indexOf('\r\n', end);
    end = nl < 0 ? msg.length : nl + 2;
  }
  return msg.subarray(0, end);
}

/**
 * Returns a script that behaves like a simple, correct POP3 server (greeting with optional APOP
 * timestamp, CAPA, USER/PASS, APOP, AUTH CRAM-MD5/PLAIN, STAT/LIST/UIDL/TOP/RETR/DELE/NOOP/RSET/
 * LAST/QUIT with correct dot-stuffing); options and `onCommand` change single behaviours.
 */
export function legacyScript(opts: LegacyOptions = {}): FakeScript {
  const accounts = opts.accounts ?? defaultAccounts();
  const userPass = opts.userPass ?? true;
  return async (conn) => {
    const ts = opts.apop === true ? apopTimestamp() : typeof opts.apop === 'string' ? opts.apop : undefined;
    conn.write(`+OK ${opts.greeting ?? 'POP3 server ready'}${ts ? ` ${ts}` : ''}\r\n`);
    // Widened on purpose: enter() changes it from inside a closure, which TS narrowing cannot see.
    let state = 'AUTHORIZATION' as 'AUTHORIZATION' | 'TRANSACTION';
    let pendingUser: string | undefined;
    let user: string | undefined;
    let deleted = new Set<number>();
    const ok = (text = ''): void => void conn.write(`+OK${text ? ` ${text}` : ''}\r\n`);
    const err = (text: string): void => void conn.write(`-ERR ${text}\r\n`);
    const fail = async (): Promise<void> => {
      if (opts.authFailureDelayMs) await new Promise((r) => setTimeout(r, opts.authFailureDelayMs));
      err('[AUTH] Authentication failed.');
    };
    const enter = (name: string): void => {
      user = name;
      state = 'TRANSACTION';
      deleted = new Set();
      ok('Logged in.');
    };
    const box = (): LegacyAccount => accounts[user!]!;
    const msgArg = (a: string | undefined): number | undefined => {
      if (a === undefined || !/^\d{1,9}$/.test(a)) return undefined;
      const n = Number(a);
      return n >= 1 && n <= box().messages.length && !deleted.has(n) ? n : undefined;
    };
    const capaLines = (): string[] =>
      opts.capa === false
        ? []
        : opts.capa
          ? [...opts.capa]
          : [
              'TOP',
              'UIDL',
              'RESP-CODES',
              'AUTH-RESP-CODE',
              ...(userPass ? ['USER'] : []),
              `SASL${opts.cramMd5 ? ' CRAM-MD5' : ''}${opts.authPlain ? ' PLAIN' : ''}`.trimEnd(),
            ].filter((l) => l !== 'SASL');

    for (;;) {
      let line: string;
      try {
        line = await conn.readLine(600_000);
      } catch {
        return; // peer went away
      }
      const [verbRaw = '', ...args] = line.split(' ');
      const verb = verbRaw.toUpperCase();
      if (opts.onCommand && (await opts.onCommand({ conn, line, verb, args, state, user }))) continue;

      if (verb === 'QUIT') {
        ok(state === 'TRANSACTION' ? 'Logging out.' : 'Bye');
        conn.end();
        return;
      }
      if (verb === 'NOOP' && state === 'TRANSACTION') {
        ok();
        continue;
      }
      if (verb === 'CAPA') {
        if (opts.capa === false) err('Unknown command.');
        else conn.write(`+OK\r\nCAPA\r\n${capaLines().map((l) => `${l}\r\n`).join('')}.\r\n`);
        continue;
      }

      if (state === 'AUTHORIZATION') {
        if (verb === 'USER' && userPass) {
          pendingUser = args.join(' ');
          ok();
        } else if (verb === 'PASS' && userPass) {
          const name = pendingUser;
          pendingUser = undefined;
          const pass = line.slice(5);
          if (name !== undefined && accounts[name]?.pass === pass) enter(name);
          else await fail();
        } else if (verb === 'APOP' && ts) {
          const [name = '', digest = ''] = args;
          const acct = accounts[name];
          const want = acct ? createHash('md5').update(ts + acct.pass, 'utf8').digest('hex') : '';
          if (acct && digest.toLowerCase() === want) enter(name);
          else await fail();
        } else if (verb === 'AUTH' && args[0]?.toUpperCase() === 'CRAM-MD5' && opts.cramMd5) {
          const challenge = `<${randomBytes(8).toString('hex')}.${Date.now()}@fake.popwarden.test>`;
          conn.write(`+ ${Buffer.from(challenge).toString('base64')}\r\n`);
          let reply: string;
          try {
            reply = Buffer.from(await conn.readLine(), 'base64').toString('utf8');
          } catch {
            return;
          }
          const sp = reply.lastIndexOf(' ');
          const name = reply.slice(0, sp);
          const acct = accounts[name];
          const want = acct ? createHmac('md5', acct.pass).update(challenge).digest('hex') : '';
          if (acct && reply.slice(sp + 1) === want) enter(name);
          else await fail();
        } else if (verb === 'AUTH' && args[0]?.toUpperCase() === 'PLAIN' && opts.authPlain) {
          let b64 = args[1];
          if (b64 === undefined) {
            conn.write('+ \r\n');
            try {
              b64 = await conn.readLine();
            } catch {
              return;
            }
          }
          const [, authc = '', pw = ''] = Buffer.from(b64, 'base64').toString('utf8').split('\0');
          if (accounts[authc]?.pass === pw) enter(authc);
          else await fail();
        } else {
          err('Unknown command or not allowed in AUTHORIZATION state.');
        }
        continue;
      }

      // TRANSACTION
      const msgs = box().messages;
      const live = (): number[] => msgs.map((_, i) => i + 1).filter((n) => !deleted.has(n));
      switch (verb) {
        case 'STAT':
          ok(`${live().length} ${live().reduce((s, n) => s + msgs[n - 1]!.length, 0)}`);
          break;
        case 'LIST':
        case 'UIDL': {
          const line1 = (n: number): string =>
            `${n} ${verb === 'LIST' ? msgs[n - 1]!.length : (box().uidls?.[n - 1] ?? `uid-${user}-${n}`)}`;
          if (args[0] !== undefined) {
            const n = msgArg(args[0]);
            if (n === undefined) err('No such message.');
            else ok(line1(n));
          } else {
            conn.write(`+OK\r\n${live().map((n) => `${line1(n)}\r\n`).join('')}.\r\n`);
          }
          break;
        }
        case 'RETR':
        case 'TOP': {
          const n = msgArg(args[0]);
          const k = verb === 'TOP' ? args[1] : '0';
          if (n === undefined || k === undefined || !/^\d{1,9}$/.test(k)) {
            err('No such message.');
            break;
          }
          const body = verb === 'RETR' ? msgs[n - 1]! : topOf(msgs[n - 1]!, Number(k));
          const wire = dotStuff(body);
          const head = verb === 'RETR' ? `+OK ${body.length} octets\r\n` : '+OK\r\n';
          const cut = opts.cutRetr;
          if (verb === 'RETR' && cut && cut.message === n) {
            await conn.write(Buffer.concat([Buffer.from(head), wire.subarray(0, cut.afterBytes)]));
            if ((cut.how ?? 'destroy') === 'end') conn.end();
            else conn.destroy();
            return;
          }
          conn.write(Buffer.concat([Buffer.from(head), wire]));
          break;
        }
        case 'DELE': {
          const n = msgArg(args[0]);
          if (n === undefined) err('No such message.');
          else {
            deleted.add(n);
            ok('Marked to be deleted.');
          }
          break;
        }
        case 'RSET':
          deleted = new Set();
          ok();
          break;
        case 'LAST':
          ok('0');
          break;
        default:
          err('Unknown command.');
      }
    }
  };
}
