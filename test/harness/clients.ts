/**
 * Real POP3 clients (openssl s_client, curl, fetchmail, Python poplib) run against a host:port,
 * plus a small raw POP3 client for probing. Each fetcher returns what it stored, so tests can
 * compare it byte for byte with the sample maildrop.
 */
import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { createHash, createHmac } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { toLf } from './maildrop.js';
import { ByteInbox } from './inbox.js';
import type { SampleMessage } from './maildrop.js';

/** How a client reaches the server: clear text, STLS upgrade, or TLS from the first byte. */
export type ClientMode = 'plain' | 'stls' | 'implicit';

/** Authentication a client is asked to use ('auto' = the client's own choice). */
export type ClientAuth = 'auto' | 'user' | 'apop' | 'plain' | 'login' | 'cram-md5';

/** What a client run produced. */
export interface ClientResult {
  readonly client: 'openssl' | 'curl' | 'fetchmail' | 'poplib';
  /** True when the client exited 0 (fetchmail: 0 or 1 "no mail") and reported no error. */
  readonly ok: boolean;
  readonly exitCode: number | null;
  /** The fetched messages in server order, as the client stored them. */
  readonly messages: Buffer[];
  /** Line ends of `messages`: fetchmail hands its MDA LF-only text, the others keep CRLF. */
  readonly lineEnding: 'crlf' | 'lf';
  /** The protocol conversation where the client shows one (openssl), else its log output. */
  readonly transcript: string;
  readonly stderr: string;
}

/** Connection options shared by every client. */
export interface ClientOptions {
  host: string;
  port: number;
  mode: ClientMode;
  user: string;
  pass: string;
  auth?: ClientAuth;
  /** Trust this CA file (PEM); without it TLS verification uses the system store. */
  caFile?: string;
  /** Skip certificate verification entirely. */
  insecure?: boolean;
  /** Overall time limit for the client run in ms (default 120 s). */
  timeoutMs?: number;
  /** Also keep the messages as OUTDIR/001.eml, 002.eml, … (old NNN.eml there are removed first). */
  outDir?: string;
}

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PYTHON = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

interface RunResult {
  code: number | null;
  /** The signal that ended the command, if one did. */
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
  timedOut: boolean;
}

/** Runs a command with a hard timeout (SIGKILL), collecting stdout as bytes. */
function run(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs: number; cwd?: string },
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: opts.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs);
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8'), timedOut });
    });
  });
}

function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `popwarden-${prefix}-`));
}

/** Creates `dir` if needed and removes NNN.eml files a previous run left there. */
function prepareOutDir(dir: string): string {
  fs.mkdirSync(dir, { recursive: true });
  for (const f of fs.readdirSync(dir)) if (/^\d+\.eml$/.test(f)) fs.rmSync(path.join(dir, f));
  return dir;
}

function emlName(n: number): string {
  return `${String(n).padStart(3, '0')}.eml`;
}

function readEmlDir(dir: string): Buffer[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => /^\d+\.eml$/.test(f))
    .sort()
    .map((f) => fs.readFileSync(path.join(dir, f)));
}

// ---------------------------------------------------------------------------------------------
// Line reading over any byte stream (sockets, child stdout)

/** Reads CRLF/LF-terminated lines from a byte stream; lines are returned without their end. */
export class LineReader {
  readonly #inbox: ByteInbox;

  constructor(stream: Readable) {
    this.#inbox = new ByteInbox(stream);
  }

  /** Bytes received but not yet returned as a line. */
  pending(): Buffer {
    return this.#inbox.unread();
  }

  /** Drops buffered bytes (used before an STLS handshake). */
  discard(): void {
    this.#inbox.discard();
  }

  /** Next line without CRLF (or LF), or null at end of stream; rejects after `timeoutMs`. */
  readLine(timeoutMs = 30_000): Promise<Buffer | null> {
    return this.#inbox.readLine(timeoutMs);
  }

  /** Reads a dot-terminated multi-line body and returns it un-stuffed with CRLF line ends. */
  async readMultiline(timeoutMs = 60_000): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (;;) {
      const line = await this.readLine(timeoutMs);
      if (line === null) throw new Error('connection closed inside a multi-line response');
      if (line.length === 1 && line[0] === 0x2e) return Buffer.concat(parts);
      parts.push(line[0] === 0x2e ? line.subarray(1) : line, Buffer.from('\r\n'));
    }
  }
}

/** Is a POP3 command's reply multi-line (RFC 1939, RFC 2449), judged from the command alone? */
export function isMultilineCommand(command: string): boolean {
  const [verb = '', ...args] = command.trim().split(/\s+/);
  switch (verb.toUpperCase()) {
    case 'CAPA':
    case 'RETR':
    case 'TOP':
      return true;
    case 'LIST':
    case 'UIDL':
      return args.length === 0;
    default:
      return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Raw POP3 client (for probing servers in tests)

/** A raw POP3 connection with line-level access, for greeting/CAPA/auth probes. */
export interface PopConnection {
  readonly greeting: string;
  /** Sends one command line (CRLF added) and returns the first reply line. */
  command(line: string): Promise<string>;
  /** Sends a command whose reply is multi-line; returns the status line and the un-stuffed body. */
  multi(line: string): Promise<{ status: string; body: Buffer }>;
  /** Sends raw bytes as they are. */
  write(bytes: string | Buffer): void;
  /** The next line from the server (null at EOF). */
  readLine(timeoutMs?: number): Promise<string | null>;
  /** Sends STLS and upgrades the connection to TLS, verifying against `caFile`. */
  stls(caFile?: string): Promise<string>;
  /** Logs in with a mechanism; resolves the final reply line (+OK or -ERR). */
  login(user: string, pass: string, mech: Exclude<ClientAuth, 'auto'>): Promise<string>;
  /** Parsed CAPA lines (empty if CAPA failed). */
  capa(): Promise<string[]>;
  close(): void;
}

/** Opens a raw POP3 connection (plain, or implicit TLS with `tls: true`) and reads the greeting. */
export async function connectPop(opts: {
  host: string;
  port: number;
  tls?: boolean;
  caFile?: string;
  localAddress?: string;
  timeoutMs?: number;
}): Promise<PopConnection> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const tlsOpts = (socket?: net.Socket): tls.ConnectionOptions => ({
    host: opts.host,
    port: opts.port,
    servername: 'localhost',
    ...(opts.caFile ? { ca: fs.readFileSync(opts.caFile) } : {}),
    ...(socket ? { socket } : {}),
    ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
  });
  let sock: net.Socket = await new Promise((resolve, reject) => {
    const s = opts.tls
      ? tls.connect(tlsOpts(), () => resolve(s))
      : net.connect({ host: opts.host, port: opts.port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) }, () =>
          resolve(s),
        );
    s.once('error', reject);
  });
  let reader = new LineReader(sock);
  const readLine = async (t = timeoutMs): Promise<string | null> => {
    const l = await reader.readLine(t);
    return l === null ? null : l.toString('utf8');
  };
  const must = async (): Promise<string> => {
    const l = await readLine();
    if (l === null) throw new Error('server closed the connection');
    return l;
  };
  const greeting = await must();
  const send = (line: string): void => {
    sock.write(line + '\r\n');
  };
  const conn: PopConnection = {
    greeting,
    async command(line) {
      send(line);
      return must();
    },
    async multi(line) {
      send(line);
      const status = await must();
      if (!status.startsWith('+OK')) return { status, body: Buffer.alloc(0) };
      return { status, body: await reader.readMultiline(timeoutMs) };
    },
    write(bytes) {
      sock.write(bytes);
    },
    readLine,
    async stls(caFile) {
      const reply = await conn.command('STLS');
      if (!reply.startsWith('+OK')) return reply;
      reader.discard();
      sock.removeAllListeners('data');
      const plain = sock;
      sock = await new Promise<net.Socket>((resolve, reject) => {
        const s = tls.connect(
          { ...tlsOpts(plain), ...(caFile ? { ca: fs.readFileSync(caFile) } : {}) },
          () => resolve(s),
        );
        s.once('error', reject);
      });
      reader = new LineReader(sock);
      return reply;
    },
    async login(user, pass, mech) {
      switch (mech) {
        case 'user': {
          const r = await conn.command(`USER ${user}`);
          if (!r.startsWith('+OK')) return r;
          return conn.command(`PASS ${pass}`);
        }
        case 'apop': {
          const ts = /<[^<>]*>/.exec(greeting)?.[0];
          if (!ts) throw new Error('no APOP timestamp in the greeting');
          const digest = createHash('md5').update(ts + pass, 'utf8').digest('hex');
          return conn.command(`APOP ${user} ${digest}`);
        }
        case 'plain':
          return conn.command(`AUTH PLAIN ${Buffer.from(`\0${user}\0${pass}`).toString('base64')}`);
        case 'login': {
          let r = await conn.command('AUTH LOGIN');
          if (!r.startsWith('+ ')) return r;
          r = await conn.command(Buffer.from(user).toString('base64'));
          if (!r.startsWith('+ ')) return r;
          return conn.command(Buffer.from(pass).toString('base64'));
        }
        case 'cram-md5': {
          const r = await conn.command('AUTH CRAM-MD5');
          if (!r.startsWith('+ ')) return r;
          const challenge = Buffer.from(r.slice(2), 'base64');
          const digest = createHmac('md5', pass).update(challenge).digest('hex');
          return conn.command(Buffer.from(`${user} ${digest}`).toString('base64'));
        }
      }
    },
    async capa() {
      const { status, body } = await conn.multi('CAPA');
      if (!status.startsWith('+OK')) return [];
      return body.toString('utf8').split('\r\n').filter((l) => l !== '');
    },
    close() {
      sock.destroy();
    },
  };
  return conn;
}

/** What a server offers on a fresh connection: its greeting and CAPA. */
export interface ServerOffers {
  readonly greeting: string;
  /** The greeting carries an RFC 1939 APOP timestamp. */
  readonly apopTimestamp: boolean;
  /** The CAPA lines, or undefined when the server answered CAPA with -ERR. */
  readonly capa: readonly string[] | undefined;
  readonly stls: boolean;
  readonly sasl: readonly string[];
}

/** Asks CAPA on `conn` (fresh, before any login) and sums up what the server offers. */
export async function readOffers(conn: PopConnection): Promise<ServerOffers> {
  const { status, body } = await conn.multi('CAPA');
  const capa = status.startsWith('+OK') ? body.toString('latin1').split('\r\n').filter((l) => l !== '') : undefined;
  const upper = (capa ?? []).map((l) => l.toUpperCase());
  return {
    greeting: conn.greeting,
    apopTimestamp: /<[^<>@\s]+@[^<>\s]+>/.test(conn.greeting),
    capa,
    stls: upper.includes('STLS'),
    sasl: (upper.find((l) => l.startsWith('SASL ')) ?? '').split(/\s+/).slice(1),
  };
}

/** How the harness itself logs in to a server to read what it serves: a mechanism, after STLS when `stlsCaFile` is set. */
export interface DirectLogin {
  readonly mechanism: Exclude<ClientAuth, 'auto'>;
  readonly stlsCaFile?: string;
}

/**
 * Logs in to host:port, sends `command(n)` for every message (`RETR n`, `TOP n 0`) and drops the
 * connection without QUIT, so nothing changes on the server. Returns each un-stuffed body.
 */
export async function readEveryMessage(
  host: string,
  port: number,
  account: { readonly user: string; readonly pass: string },
  login: DirectLogin,
  command: (n: number) => string,
): Promise<Buffer[]> {
  const conn = await connectPop({ host, port, timeoutMs: 30_000 });
  try {
    if (login.stlsCaFile !== undefined) {
      const stls = await conn.stls(login.stlsCaFile);
      if (!stls.startsWith('+OK')) throw new Error(`direct STLS refused: ${stls}`);
    }
    const reply = await conn.login(account.user, account.pass, login.mechanism);
    if (!reply.startsWith('+OK')) throw new Error(`direct ${login.mechanism} login as ${account.user} failed: ${reply}`);
    const stat = await conn.command('STAT');
    const count = Number(/^\+OK (\d+)/.exec(stat)?.[1]);
    if (!Number.isInteger(count)) throw new Error(`unexpected STAT reply ${JSON.stringify(stat)}`);
    const messages: Buffer[] = [];
    for (let n = 1; n <= count; n++) {
      const { status, body } = await conn.multi(command(n));
      if (!status.startsWith('+OK')) throw new Error(`${command(n)}: ${status}`);
      messages.push(body);
    }
    return messages;
  } finally {
    conn.close();
  }
}

// ---------------------------------------------------------------------------------------------
// openssl s_client

/** Options for driving `openssl s_client` (mode 'implicit' or 'stls' = `-starttls pop3`). */
export interface OpensslOptions {
  host: string;
  port: number;
  mode: 'implicit' | 'stls';
  caFile?: string;
  insecure?: boolean;
  /** Name or IP the certificate must match (default: host). */
  verifyName?: string;
  timeoutMs?: number;
}

/** One step of an s_client script: a command line, optionally with its multi-line-ness forced. */
export type OpensslStep = string | { send: string; multiline?: boolean; shown?: string };

/** A live s_client process with POP3 line access. */
interface OpensslSession {
  greeting: string | undefined;
  transcript: string[];
  step(s: OpensslStep): Promise<{ status: string; body?: Buffer }>;
  /** Ends s_client: EOF on its stdin (it closes the connection, no QUIT), or SIGKILL with `kill`. */
  finish(kill?: boolean): Promise<{ code: number | null; stderr: string }>;
}

function opensslArgs(o: OpensslOptions): string[] {
  const args = ['s_client', '-quiet', '-connect', `${o.host}:${o.port}`];
  if (o.mode === 'stls') args.push('-starttls', 'pop3');
  if (!o.insecure) {
    args.push('-verify_return_error');
    if (o.caFile) args.push('-CAfile', o.caFile);
    const name = o.verifyName ?? o.host;
    args.push(net.isIP(name) ? '-verify_ip' : '-verify_hostname', name);
  }
  return args;
}

async function openOpenssl(o: OpensslOptions): Promise<OpensslSession> {
  const timeoutMs = o.timeoutMs ?? 60_000;
  const child = spawn('openssl', opensslArgs(o), { stdio: ['pipe', 'pipe', 'pipe'] });
  const killTimer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const errChunks: Buffer[] = [];
  child.stderr.on('data', (d: Buffer) => errChunks.push(d));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  child.once('error', () => undefined);
  const reader = new LineReader(child.stdout);
  const stdin: Writable = child.stdin;
  stdin.on('error', () => undefined);
  const transcript: string[] = [];
  const line = async (): Promise<string> => {
    const l = await reader.readLine(timeoutMs);
    if (l === null) throw new Error('openssl s_client closed the connection');
    const s = l.toString('utf8');
    transcript.push(`S: ${s}`);
    return s;
  };
  let greeting: string | undefined;
  // With -starttls pop3, s_client consumes the greeting and the STLS exchange itself.
  if (o.mode === 'implicit') {
    try {
      greeting = await line();
    } catch (e) {
      // No session object will ever be finished: stop the process and its timer here.
      child.kill('SIGKILL');
      await exited;
      clearTimeout(killTimer);
      throw new Error(`${(e as Error).message}: ${Buffer.concat(errChunks).toString('utf8').trim()}`);
    }
  }
  return {
    greeting,
    transcript,
    async step(s) {
      const st = typeof s === 'string' ? { send: s } : s;
      transcript.push(`C: ${st.shown ?? st.send}`);
      stdin.write(st.send + '\r\n');
      const status = await line();
      if (!status.startsWith('+OK') || !(st.multiline ?? isMultilineCommand(st.send))) return { status };
      const body = await reader.readMultiline(timeoutMs);
      const n = body.length;
      transcript.push(`S: (${n} octets, sha256 ${createHash('sha256').update(body).digest('hex').slice(0, 16)})`, 'S: .');
      return { status, body };
    },
    async finish(kill = false) {
      if (kill) child.kill('SIGKILL');
      else stdin.end();
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(t);
      clearTimeout(killTimer);
      return { code, stderr: Buffer.concat(errChunks).toString('utf8') };
    },
  };
}

/**
 * Runs a script of POP3 commands through `openssl s_client` and returns the transcript (`C:`/`S:`
 * lines; multi-line bodies summarised) plus each step's reply. `end: 'kill'` SIGKILLs s_client
 * after the last reply instead of closing its stdin: a client that dies mid-session.
 */
export async function opensslScript(
  o: OpensslOptions,
  steps: OpensslStep[],
  options: { end?: 'close' | 'kill' } = {},
): Promise<{ ok: boolean; exitCode: number | null; transcript: string; replies: { status: string; body?: Buffer }[]; stderr: string }> {
  let session: OpensslSession | undefined;
  const replies: { status: string; body?: Buffer }[] = [];
  let error: string | undefined;
  try {
    session = await openOpenssl(o);
    for (const s of steps) replies.push(await session.step(s));
  } catch (e) {
    error = (e as Error).message;
  }
  const fin = session ? await session.finish(options.end === 'kill') : { code: null, stderr: '' };
  const transcript = (session?.transcript ?? []).join('\n');
  return {
    ok: error === undefined,
    exitCode: fin.code,
    transcript,
    replies,
    stderr: fin.stderr + (error ? `\nharness: ${error}` : ''),
  };
}

/** Fetches every message with `openssl s_client` (USER/PASS unless `auth` says otherwise). */
export async function fetchWithOpenssl(o: ClientOptions & { verifyName?: string }): Promise<ClientResult> {
  if (o.mode === 'plain') throw new Error('openssl s_client only does TLS');
  const auth = o.auth === undefined || o.auth === 'auto' ? 'user' : o.auth;
  const messages: Buffer[] = [];
  let session: OpensslSession | undefined;
  let error: string | undefined;
  const expectOk = (r: { status: string }): void => {
    if (!r.status.startsWith('+OK')) throw new Error(`server said: ${r.status}`);
  };
  const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
  try {
    session = await openOpenssl({
      host: o.host,
      port: o.port,
      mode: o.mode,
      ...(o.caFile ? { caFile: o.caFile } : {}),
      ...(o.insecure ? { insecure: true } : {}),
      ...(o.verifyName ? { verifyName: o.verifyName } : {}),
      ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}),
    });
    const s = session;
    switch (auth) {
      case 'user':
        expectOk(await s.step(`USER ${o.user}`));
        expectOk(await s.step({ send: `PASS ${o.pass}`, shown: 'PASS ********' }));
        break;
      case 'apop': {
        const ts = s.greeting !== undefined ? /<[^<>]*>/.exec(s.greeting)?.[0] : undefined;
        if (!ts) throw new Error('APOP needs the greeting timestamp (s_client -starttls hides the greeting)');
        expectOk(await s.step(`APOP ${o.user} ${createHash('md5').update(ts + o.pass, 'utf8').digest('hex')}`));
        break;
      }
      case 'plain':
        expectOk(await s.step({ send: `AUTH PLAIN ${b64(`\0${o.user}\0${o.pass}`)}`, shown: 'AUTH PLAIN ********' }));
        break;
      case 'login':
        await s.step('AUTH LOGIN');
        await s.step(b64(o.user));
        expectOk(await s.step({ send: b64(o.pass), shown: '********' }));
        break;
      case 'cram-md5': {
        const r = await s.step('AUTH CRAM-MD5');
        if (!r.status.startsWith('+ ')) throw new Error(`server said: ${r.status}`);
        const digest = createHmac('md5', o.pass).update(Buffer.from(r.status.slice(2), 'base64')).digest('hex');
        expectOk(await s.step(b64(`${o.user} ${digest}`)));
        break;
      }
    }
    const stat = await s.step('STAT');
    expectOk(stat);
    const count = Number(stat.status.split(' ')[1]);
    const out = o.outDir !== undefined ? prepareOutDir(o.outDir) : undefined;
    for (let i = 1; i <= count; i++) {
      const r = await s.step(`RETR ${i}`);
      expectOk(r);
      messages.push(r.body ?? Buffer.alloc(0));
      if (out !== undefined) fs.writeFileSync(path.join(out, emlName(i)), r.body ?? Buffer.alloc(0));
    }
    await s.step('QUIT');
  } catch (e) {
    error = (e as Error).message;
  }
  // -quiet implies -ign_eof: after a failure the server may keep the connection open, so
  // closing stdin would not end s_client; it is killed instead.
  const fin = session ? await session.finish(error !== undefined) : { code: null, stderr: '' };
  return {
    client: 'openssl',
    ok: error === undefined,
    exitCode: fin.code,
    messages,
    lineEnding: 'crlf',
    transcript: session?.transcript.join('\n') ?? '',
    stderr: fin.stderr + (error ? `\nharness: ${error}` : ''),
  };
}

// ---------------------------------------------------------------------------------------------
// curl

/** curl's --login-options for each mechanism it can be made to use (USER/PASS it cannot). */
const CURL_LOGIN_OPTIONS: Record<Exclude<ClientAuth, 'auto' | 'user'>, string> = {
  apop: 'AUTH=+APOP',
  plain: 'AUTH=PLAIN',
  login: 'AUTH=LOGIN',
  'cram-md5': 'AUTH=CRAM-MD5',
};

/** Fetches every message (LIST, then one RETR per message) or only `messages` with curl. */
export async function fetchWithCurl(
  o: ClientOptions & { messages?: number[]; interface?: string; saslIr?: boolean; /** curl -v: the server's lines ("< +OK ...") in stderr. */ verbose?: boolean },
): Promise<ClientResult> {
  const work = tempDir('curl');
  const timeoutMs = o.timeoutMs ?? 120_000;
  try {
    const q = (s: string): string => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
    fs.writeFileSync(path.join(work, 'curlrc'), `user = ${q(`${o.user}:${o.pass}`)}\n`, { mode: 0o600 });
    const args = ['-K', path.join(work, 'curlrc'), '-sS', '--max-time', String(Math.ceil(timeoutMs / 1000))];
    const auth = o.auth ?? 'auto';
    if (auth === 'user') throw new Error('curl cannot force USER/PASS (it uses it only when no SASL and no APOP is offered)');
    if (auth !== 'auto') args.push('--login-options', CURL_LOGIN_OPTIONS[auth]);
    if (o.saslIr) args.push('--sasl-ir');
    if (o.verbose) args.push('-v');
    if (o.interface) args.push('--interface', o.interface);
    const scheme = o.mode === 'implicit' ? 'pop3s' : 'pop3';
    if (o.mode === 'stls') args.push('--ssl-reqd');
    if (o.mode !== 'plain') {
      if (o.insecure) args.push('-k');
      else if (o.caFile) args.push('--cacert', o.caFile);
    }
    const base = `${scheme}://${o.host}:${o.port}`;
    let stderr = '';
    let transcript = '';
    let numbers = o.messages;
    if (!numbers) {
      const list = await run('curl', [...args, `${base}/`], { timeoutMs });
      stderr += list.stderr;
      transcript += `LIST:\n${list.stdout.toString('utf8')}`;
      if (list.code !== 0) {
        return { client: 'curl', ok: false, exitCode: list.code, messages: [], lineEnding: 'crlf', transcript, stderr };
      }
      numbers = list.stdout
        .toString('utf8')
        .split(/\r?\n/)
        .map((l) => /^(\d+)\s/.exec(l)?.[1])
        .filter((n): n is string => n !== undefined)
        .map(Number);
    }
    const messages: Buffer[] = [];
    const out = o.outDir !== undefined ? prepareOutDir(o.outDir) : work;
    for (const n of numbers) {
      const file = path.join(out, emlName(n));
      const r = await run('curl', [...args, `${base}/${n}`, '-o', file], { timeoutMs });
      stderr += r.stderr;
      if (r.code !== 0) {
        return { client: 'curl', ok: false, exitCode: r.code, messages, lineEnding: 'crlf', transcript, stderr };
      }
      messages.push(fs.readFileSync(file));
    }
    return { client: 'curl', ok: true, exitCode: 0, messages, lineEnding: 'crlf', transcript, stderr };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// fetchmail

/**
 * Fetches every message with fetchmail, its MDA writing OUTDIR/NNN.eml: in keep mode unless
 * `keep: false`, when fetchmail deletes each message it delivered (DELE, then QUIT).
 */
export async function fetchWithFetchmail(o: ClientOptions & { tlsName?: string; verbose?: boolean; keep?: boolean }): Promise<ClientResult> {
  const work = tempDir('fetchmail');
  const out = prepareOutDir(o.outDir ?? path.join(work, 'out'));
  try {
    const q = (s: string): string => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
    // The MDA is run once per message, one at a time: count what is there and write the next file.
    const mda = path.join(work, 'deliver.sh');
    fs.writeFileSync(
      mda,
      '#!/bin/sh\nset -e\nn=$(ls "$1" | grep -c "\\.eml$" || true)\nf=$(printf "%s/%03d.eml" "$1" $((n + 1)))\ncat >"$f.tmp"\nmv "$f.tmp" "$f"\n',
      { mode: 0o755 },
    );
    let proto = 'POP3';
    let auth = 'any';
    switch (o.auth ?? 'auto') {
      case 'auto':
        break;
      case 'user':
        auth = 'password';
        break;
      case 'apop':
        proto = 'APOP';
        auth = 'password';
        break;
      case 'cram-md5':
        auth = 'cram-md5';
        break;
      case 'plain':
      case 'login':
        throw new Error(`fetchmail has no AUTH ${o.auth} for POP3`);
    }
    // sslproto '' forbids even opportunistic STLS; sslproto without ssl makes STLS mandatory.
    let tlsLine = o.mode === 'plain' ? "sslproto ''" : o.mode === 'stls' ? "sslproto 'tls1.2+'" : 'ssl';
    if (o.mode !== 'plain') {
      if (o.insecure) tlsLine += ' no sslcertck';
      else {
        tlsLine += ' sslcertck';
        if (o.caFile) tlsLine += ` sslcertfile ${q(o.caFile)}`;
        // fetchmail matches CN/DNS SANs only, never IP SANs.
        const name = o.tlsName ?? (net.isIP(o.host) ? 'localhost' : undefined);
        if (name) tlsLine += ` sslcommonname ${q(name)}`;
      }
    }
    const localUser = os.userInfo().username;
    const rc = path.join(work, 'fetchmailrc');
    fs.writeFileSync(
      rc,
      [
        'set no syslog',
        `poll ${q(o.host)} with protocol ${proto} service ${o.port} auth ${auth} timeout 60`,
        `  user ${q(o.user)} there with password ${q(o.pass)} is ${q(localUser)} here`,
        `  ${o.keep === false ? 'no keep' : 'keep'} fetchall no rewrite`,
        `  ${tlsLine}`,
        `  mda ${q(`${mda} ${out}`)}`,
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    const args = ['-f', rc, '--idfile', path.join(work, 'fetchids'), '--pidfile', path.join(work, 'fetchmail.pid'), '--nodetach', '--invisible', '-d0'];
    if (o.verbose !== false) args.push('-v');
    const r = await run('fetchmail', args, {
      timeoutMs: o.timeoutMs ?? 120_000,
      env: { ...process.env, HOME: work, FETCHMAILHOME: work },
    });
    // 0 = mail fetched, 1 = no mail; anything else is an error.
    const ok = !r.timedOut && (r.code === 0 || r.code === 1);
    return {
      client: 'fetchmail',
      ok,
      exitCode: r.code,
      messages: readEmlDir(out),
      lineEnding: 'lf',
      transcript: r.stdout.toString('utf8') + r.stderr,
      stderr: r.stderr,
    };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Python poplib

/** Fetches every message with Python's poplib (test/harness/poplib_fetch.py). */
export async function fetchWithPoplib(
  o: ClientOptions & { source?: string; checkOctets?: boolean },
): Promise<ClientResult> {
  const work = tempDir('poplib');
  try {
    const mode = o.mode === 'implicit' ? 'implicit-tls' : o.mode;
    const out = o.outDir !== undefined ? prepareOutDir(o.outDir) : work;
    const args = [path.join(HERE, 'poplib_fetch.py'), o.host, String(o.port), o.user, mode, out, '--auth', o.auth ?? 'auto'];
    if (o.caFile) args.push('--cafile', o.caFile);
    if (o.insecure) args.push('--insecure');
    if (o.source) args.push('--source', o.source);
    if (o.checkOctets === false) args.push('--no-octet-check');
    const r = await run(PYTHON, args, { timeoutMs: o.timeoutMs ?? 120_000, env: { ...process.env, POP_PASS: o.pass } });
    return {
      client: 'poplib',
      ok: !r.timedOut && r.code === 0,
      exitCode: r.code,
      messages: readEmlDir(out),
      lineEnding: 'crlf',
      transcript: r.stderr,
      stderr: r.stderr,
    };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/**
 * With Python's poplib: logs in, DELE each of `numbers`, then QUIT (`end: 'quit'`) or the script
 * SIGKILLs itself (`end: 'kill'`), a client that dies with deletions pending. `ok`: every DELE
 * got +OK and the run ended as asked.
 */
export async function deleteWithPoplib(o: ClientOptions, numbers: readonly number[], end: 'quit' | 'kill'): Promise<ClientResult> {
  const mode = o.mode === 'implicit' ? 'implicit-tls' : o.mode;
  const args = [path.join(HERE, 'poplib_fetch.py'), o.host, String(o.port), o.user, mode, '-', '--auth', o.auth ?? 'auto', '--dele', numbers.join(','), '--end', end];
  if (o.caFile) args.push('--cafile', o.caFile);
  if (o.insecure) args.push('--insecure');
  const r = await run(PYTHON, args, { timeoutMs: o.timeoutMs ?? 120_000, env: { ...process.env, POP_PASS: o.pass } });
  const deleted = numbers.every((n) => r.stderr.includes(`dele ${n}: +OK`));
  const ended = end === 'kill' ? r.signal === 'SIGKILL' && r.stderr.includes('killing myself') : r.code === 0;
  return {
    client: 'poplib',
    ok: !r.timedOut && deleted && ended,
    exitCode: r.code,
    messages: [],
    lineEnding: 'crlf',
    transcript: r.stderr,
    stderr: r.stderr,
  };
}

// ---------------------------------------------------------------------------------------------
// Comparison

/**
 * Asserts that a client fetched exactly the expected messages, in order and byte for byte
 * (expected bytes are converted to LF first for clients that deliver LF, i.e. fetchmail).
 */
export function assertSameMessages(
  fetched: ClientResult | readonly Buffer[],
  expected: readonly (SampleMessage | Buffer)[],
  opts: { lineEnding?: 'crlf' | 'lf' } = {},
): void {
  const got = Array.isArray(fetched) ? (fetched as readonly Buffer[]) : (fetched as ClientResult).messages;
  const lineEnding = opts.lineEnding ?? (Array.isArray(fetched) ? 'crlf' : (fetched as ClientResult).lineEnding);
  const want = expected.map((m) => (Buffer.isBuffer(m) ? m : m.bytes)).map((b) => (lineEnding === 'lf' ? toLf(b) : b));
  const label = Array.isArray(fetched) ? 'fetched' : (fetched as ClientResult).client;
  assert.equal(got.length, want.length, `${label}: got ${got.length} messages, want ${want.length}`);
  want.forEach((w, i) => {
    const g = got[i]!;
    if (g.equals(w)) return;
    let at = 0;
    while (at < g.length && at < w.length && g[at] === w[at]) at++;
    assert.fail(
      `${label}: message ${i + 1} differs (got ${g.length} bytes, want ${w.length}); first difference at byte ${at}: ` +
        `got ${JSON.stringify(g.subarray(at, at + 40).toString('latin1'))}, want ${JSON.stringify(w.subarray(at, at + 40).toString('latin1'))}`,
    );
  });
}
