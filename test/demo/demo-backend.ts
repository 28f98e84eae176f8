/**
 * DEMO ONLY — NOT A PRODUCTION POP3 SERVER.
 *
 * A tiny in-memory POP3 server that behaves like the legacy servers popwarden fronts (qpopper,
 * UW ipop3d, popa3d): plaintext only, USER/PASS and APOP, no STLS, no SASL. `npm start` puts
 * popwarden in front of it so the whole path can be tried on one machine. It keeps one sample
 * maildrop for user `demo` / password `demo-password` in memory; deletions committed by QUIT last
 * until the process exits. It binds to whatever host it is given, so give it 127.0.0.1.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import net from 'node:net';
import type { AddressInfo, Socket } from 'node:net';

export const DEMO_USER = 'demo';
export const DEMO_PASSWORD = 'demo-password';

/** RFC 2449 §4: a command line is at most 255 octets, CRLF included. Longer lines end the session. */
const MAX_LINE_OCTETS = 255;

/** RFC 1939 §3: the autologout timer must be at least 10 minutes. */
const IDLE_TIMEOUT_MS = 10 * 60 * 1000;

export interface DemoBackendOptions {
  /** Address to bind; use a loopback address. */
  readonly host: string;
  /** Port to bind; 0 asks the kernel for a free one. */
  readonly port: number;
  /** Receives one human-readable line per connection event and command (passwords masked). */
  readonly log?: (line: string) => void;
}

export interface DemoBackend {
  readonly host: string;
  readonly port: number;
  /** Stops listening, drops every open session (no UPDATE for them) and resolves when closed. */
  close(): Promise<void>;
}

interface Message {
  readonly uid: string;
  /** The message as stored: CRLF line endings, not dot-stuffed, no terminating ".". */
  readonly text: string;
}

function crlf(lines: readonly string[]): string {
  return lines.map((l) => `${l}\r\n`).join('');
}

function sampleMaildrop(): Message[] {
  const headers = (n: number, subject: string): string[] => [
    'From: popwarden demo <demo@popwarden-demo.invalid>',
    'To: demo@popwarden-demo.invalid',
    `Subject: ${subject}`,
    `Date: Mon, 2 Nov 2026 09:0${n}:00 +0000`,
    `Message-ID: <demo-${n}@popwarden-demo.invalid>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=us-ascii',
  ];
  return [
    {
      uid: 'demo-0001-welcome',
      text: crlf([
        ...headers(1, 'Welcome to the popwarden demo'),
        '',
        'Hello!',
        '',
        'You are reading this through popwarden: your client spoke TLS to',
        'popwarden, and popwarden logged in to this plaintext demo server',
        'with APOP, so your password never crossed the backend link.',
        '',
        'Try LIST, UIDL, TOP 2 3 and RETR 2 next.',
      ]),
    },
    {
      uid: 'demo-0002-dots',
      text: crlf([
        ...headers(2, 'Lines that start with a dot'),
        '',
        'POP3 ends a multi-line reply with a line holding a single dot, so',
        'a line of the message that starts with a dot gets one more dot on',
        'the wire (RFC 1939 section 3, "byte-stuffing"). The next two lines',
        'start with one and two dots; a raw session shows them doubled:',
        '.hidden-file',
        '..and two dots',
        '.',
        'The line above is a lone dot, which must not end the message.',
      ]),
    },
    {
      uid: 'demo-0003-dele',
      text: crlf([
        ...headers(3, 'DELE only counts after QUIT'),
        '',
        'DELE 3 marks this message; RSET unmarks it. The server deletes',
        'marked messages only when the session ends with QUIT. Drop the',
        'connection instead, and every message is still here next time.',
      ]),
    },
  ];
}

/** RFC 1939 §3 byte-stuffing of a stored message, plus the terminating ".". */
function dotStuff(lines: readonly string[]): string {
  return lines.map((l) => (l.startsWith('.') ? `.${l}\r\n` : `${l}\r\n`)).join('') + '.\r\n';
}

/** Splits stored CRLF text into lines, without the trailing empty element. */
function splitLines(text: string): string[] {
  const lines = text.split('\r\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** A message number or line count: digits only, no sign, no overflow (popa3d's strictness). */
function parseCount(arg: string | undefined): number | undefined {
  if (arg === undefined || !/^[0-9]{1,9}$/.test(arg)) return undefined;
  return Number(arg);
}

function md5Hex(text: string): string {
  return createHash('md5').update(text, 'latin1').digest('hex');
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a, 'latin1');
  const y = Buffer.from(b, 'latin1');
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Starts the demo server. Resolves once it is listening, with the port the kernel gave it. */
export function startDemoBackend(options: DemoBackendOptions): Promise<DemoBackend> {
  const log = options.log ?? (() => {});
  let maildrop = sampleMaildrop();
  let locked = false;
  let lastStamp = 0;
  let nextSession = 1;
  const sockets = new Set<Socket>();

  const serve = (socket: Socket): void => {
    const id = nextSession++;
    const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.setTimeout(IDLE_TIMEOUT_MS);

    // RFC 1939 §4: the timestamp must differ for every greeting; a strictly increasing clock does that.
    lastStamp = Math.max(Date.now(), lastStamp + 1);
    const timestamp = `<${process.pid}.${lastStamp}@popwarden-demo>`;

    let state: 'AUTHORIZATION' | 'TRANSACTION' | 'DONE' = 'AUTHORIZATION';
    let pendingUser: string | undefined;
    let holdsLock = false;
    let view: readonly Message[] = [];
    const deleted = new Set<number>();
    let pending: Buffer = Buffer.alloc(0);

    const note = (text: string): void => log(`#${id} ${text}`);
    const send = (text: string): void => {
      if (!socket.destroyed) socket.write(text);
    };
    const ok = (text: string): void => send(`+OK ${text}\r\n`);
    const err = (text: string): void => send(`-ERR ${text}\r\n`);

    const finish = (): void => {
      state = 'DONE';
      socket.end();
    };

    const live = (): { n: number; octets: number } => {
      let n = 0;
      let octets = 0;
      view.forEach((m, i) => {
        if (!deleted.has(i)) {
          n++;
          octets += Buffer.byteLength(m.text, 'latin1');
        }
      });
      return { n, octets };
    };

    /** Resolves a message-number argument to an index of a message not marked deleted. */
    const pick = (arg: string | undefined): number | undefined => {
      const n = parseCount(arg);
      if (n === undefined) {
        err('invalid message number');
        return undefined;
      }
      const i = n - 1;
      if (i < 0 || i >= view.length) {
        err('no such message');
        return undefined;
      }
      if (deleted.has(i)) {
        err(`message ${n} already deleted`);
        return undefined;
      }
      return i;
    };

    const login = (user: string): void => {
      if (locked) {
        err('[IN-USE] maildrop already locked by another session');
        return;
      }
      locked = true;
      holdsLock = true;
      view = maildrop;
      state = 'TRANSACTION';
      const { n, octets } = live();
      note(`logged in as ${user}`);
      ok(`${user}'s maildrop has ${n} messages (${octets} octets)`);
    };

    const authorization = (verb: string, args: string[], rest: string): void => {
      switch (verb) {
        case 'USER':
          if (args.length !== 1) return err('usage: USER name');
          pendingUser = args[0];
          return ok('send PASS');
        case 'PASS': {
          const user = pendingUser;
          pendingUser = undefined;
          if (user === undefined) return err('USER first');
          if (user === DEMO_USER && sameSecret(rest, DEMO_PASSWORD)) return login(user);
          note(`PASS rejected for ${JSON.stringify(user)}`);
          return err('[AUTH] invalid user name or password');
        }
        case 'APOP': {
          pendingUser = undefined;
          const [user, digest] = args;
          if (args.length !== 2 || user === undefined || digest === undefined) return err('usage: APOP name digest');
          const expected = md5Hex(timestamp + DEMO_PASSWORD);
          if (user === DEMO_USER && sameSecret(digest.toLowerCase(), expected)) return login(user);
          note(`APOP rejected for ${JSON.stringify(user)}`);
          return err('[AUTH] invalid user name or digest');
        }
        default:
          return err('command not valid before login');
      }
    };

    const transaction = (verb: string, args: string[]): void => {
      switch (verb) {
        case 'STAT': {
          if (args.length !== 0) return err('usage: STAT');
          const { n, octets } = live();
          return ok(`${n} ${octets}`);
        }
        case 'LIST':
        case 'UIDL': {
          const field = (m: Message): string =>
            verb === 'LIST' ? String(Buffer.byteLength(m.text, 'latin1')) : m.uid;
          if (args.length > 1) return err(`usage: ${verb} [msg]`);
          if (args.length === 1) {
            const i = pick(args[0]);
            const m = i === undefined ? undefined : view[i];
            if (i !== undefined && m !== undefined) ok(`${i + 1} ${field(m)}`);
            return;
          }
          const { n, octets } = live();
          const lines = view.flatMap((m, i) => (deleted.has(i) ? [] : [`${i + 1} ${field(m)}`]));
          const head = verb === 'LIST' ? `${n} messages (${octets} octets)` : 'unique-id listing follows';
          return send(`+OK ${head}\r\n${dotStuff(lines)}`);
        }
        case 'RETR': {
          if (args.length !== 1) return err('usage: RETR msg');
          const i = pick(args[0]);
          const m = i === undefined ? undefined : view[i];
          if (m === undefined) return;
          return send(`+OK ${Buffer.byteLength(m.text, 'latin1')} octets\r\n${dotStuff(splitLines(m.text))}`);
        }
        case 'TOP': {
          if (args.length !== 2) return err('usage: TOP msg lines');
          const count = parseCount(args[1]);
          if (count === undefined) return err('invalid line count');
          const i = pick(args[0]);
          const m = i === undefined ? undefined : view[i];
          if (m === undefined) return;
          const lines = splitLines(m.text);
          const blank = lines.indexOf('');
          const headerEnd = blank === -1 ? lines.length : blank + 1;
          return send(`+OK top of message follows\r\n${dotStuff(lines.slice(0, headerEnd + count))}`);
        }
        case 'DELE': {
          if (args.length !== 1) return err('usage: DELE msg');
          const i = pick(args[0]);
          if (i === undefined) return;
          deleted.add(i);
          return ok(`message ${i + 1} marked for deletion`);
        }
        case 'RSET': {
          if (args.length !== 0) return err('usage: RSET');
          deleted.clear();
          const { n, octets } = live();
          return ok(`maildrop has ${n} messages (${octets} octets)`);
        }
        case 'NOOP':
          return args.length === 0 ? ok('') : err('usage: NOOP');
        default:
          return err('unknown command');
      }
    };

    const command = (line: string): void => {
      const space = line.indexOf(' ');
      const verb = (space === -1 ? line : line.slice(0, space)).toUpperCase();
      const rest = space === -1 ? '' : line.slice(space + 1);
      const args = rest === '' ? [] : rest.split(/ +/);
      note(verb === 'PASS' ? 'C: PASS ********' : verb === 'APOP' ? `C: APOP ${args[0] ?? ''} ********` : `C: ${line}`);

      if (verb === 'QUIT') {
        if (state === 'TRANSACTION') {
          // RFC 1939 §6: the UPDATE state, entered only from QUIT.
          maildrop = view.filter((_, i) => !deleted.has(i));
          const removed = deleted.size;
          deleted.clear();
          note(`UPDATE removed ${removed} message(s), ${maildrop.length} left`);
          ok(`popwarden demo server signing off (${maildrop.length} messages left)`);
        } else {
          ok('popwarden demo server signing off');
        }
        return finish();
      }
      if (verb === 'CAPA') {
        return send('+OK capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nRESP-CODES\r\n.\r\n');
      }
      if (state === 'AUTHORIZATION') return authorization(verb, args, rest);
      if (state === 'TRANSACTION') return transaction(verb, args);
    };

    socket.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      for (;;) {
        if (state === 'DONE') return;
        const lf = pending.indexOf(0x0a);
        if (lf === -1) {
          if (pending.length >= MAX_LINE_OCTETS) {
            err('line too long');
            finish();
          }
          return;
        }
        if (lf + 1 > MAX_LINE_OCTETS) {
          err('line too long');
          return finish();
        }
        // Accept a bare LF as well as CRLF, as most legacy servers do.
        const end = lf > 0 && pending[lf - 1] === 0x0d ? lf - 1 : lf;
        const line = pending.subarray(0, end).toString('latin1');
        pending = pending.subarray(lf + 1);
        command(line);
      }
    });
    socket.on('timeout', () => {
      note('idle timeout, closing without UPDATE');
      err('autologout; idle for too long');
      finish();
    });
    socket.on('error', (e: Error) => note(`socket error: ${e.message}`));
    socket.on('close', () => {
      sockets.delete(socket);
      if (holdsLock) locked = false;
      note(state === 'DONE' ? 'closed' : 'client went away without QUIT; nothing deleted');
    });

    note(`connection from ${peer}`);
    ok(`popwarden DEMO POP3 server (not for production) ready ${timestamp}`);
  };

  const server = net.createServer(serve);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: options.host, port: options.port, exclusive: true }, () => {
      server.off('error', reject);
      const address = server.address() as AddressInfo;
      resolve({
        host: options.host,
        port: address.port,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            for (const s of sockets) s.destroy();
          }),
      });
    });
  });
}
