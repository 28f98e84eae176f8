/**
 * Real legacy POP3 servers as TCP backends: popa3d, GNU mailutils pop3d and solid-pop3d from
 * Debian, unpacked by scripts/test-all.sh into /opt/popwarden-peers (POPWARDEN_PEERS_DIR), each
 * started the way they run on the hosts popwarden is for: inetd-style, one process per
 * connection, the accepted TCP socket itself as stdin and stdout (socat `fork` + `EXEC:…,nofork`,
 * exactly what inetd does).
 *
 * These servers authenticate system users (PAM or getpwnam + /etc/shadow), then switch to the
 * mailbox owner's uid and read /var/mail/USER. To give them the sample accounts without touching
 * the host, the listener runs in a private mount namespace (`unshare -m`) where /etc/passwd,
 * /etc/shadow, /etc/group and /var/mail are bind-mounted from the instance's directory. Needs
 * root with CAP_SYS_ADMIN, as the tests run in CI.
 *
 * Every instance is its own session and PID namespace: `unshare --pid --fork` makes the listener
 * the namespace's init, which reaps every orphan (popa3d's privilege-separated child outlives its
 * parent; on a host whose PID 1 never reaps, that would be a zombie for good), and when the
 * listener dies the kernel kills and reaps everything left in the namespace. stop() ends the
 * listener; if the `unshare` above it dies first, --kill-child takes the namespace with it.
 * The chain also dies with the test process (setpriv --pdeathsig), however that ends.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { connectPop } from './clients.js';
import { MAIL_GID, sampleMaildrop, type SampleAccount } from './maildrop.js';
import { toMbox } from './mbox.js';
import { freePort } from './ports.js';
import { processTable } from './proc.js';
import { makeNamedCertificate } from './popwarden.js';

/** The servers this harness can start. */
export type LegacyServerKind = 'popa3d' | 'mailutils' | 'solid-pop3d';

/** Options for startLegacyServer. */
export interface LegacyOptions {
  readonly server: LegacyServerKind;
  /** mailutils only: offer STLS (self-signed certificate, see `caFile`). */
  readonly stls?: boolean;
  /**
   * mailutils: APOP secrets for alice and bob in its popauth database (default true).
   * solid-pop3d: `AllowAPOP` (default true, its own default: a timestamp for every user, though
   * no user has an APOP secret in ~/.spop3d).
   */
  readonly apop?: boolean;
  /** Where the servers are unpacked (default PEERS_DIR). */
  readonly peersDir?: string;
}

/** What the server offers, as probed on a fresh connection after it started. */
export interface LegacyOffers {
  readonly greeting: string;
  /** The greeting carries an RFC 1939 APOP timestamp. */
  readonly apopTimestamp: boolean;
  /** The CAPA lines, or undefined when the server answered CAPA with -ERR. */
  readonly capa: readonly string[] | undefined;
  readonly stls: boolean;
  readonly sasl: readonly string[];
}

/** A running legacy server. */
export interface LegacyServer {
  readonly kind: LegacyServerKind;
  /** Kind plus variant, e.g. `mailutils+stls`, for test names and tables. */
  readonly label: string;
  readonly host: string;
  readonly port: number;
  readonly offers: LegacyOffers;
  /** The self-signed STLS certificate (names localhost and 127.0.0.1), when `stls` is on. */
  readonly caFile?: string;
  /** Instance directory (etc/, spool/, home/, config, log); removed by stop(). */
  readonly dir: string;
  /** The pid of the `unshare` that runs the listener's namespace, also the instance's session id. */
  readonly pid: number;
  /** socat's connection log and every server's stderr. */
  readonly logFile: string;
  /**
   * One session of this server on stdin/stdout, the way inetd runs it: as popwarden's
   * `backend: {exec: ...}`, or as the command of a socket-activated listener. It enters a mount and
   * PID namespace of its own with this instance's accounts and spool (so the spool is the one
   * fetchDirect reads), and the namespace dies with it.
   */
  readonly exec: { readonly command: string; readonly args: readonly string[] };
  /** Every live (non-zombie) process of the instance, in the host's pid numbering, `pid` first. */
  processes(): number[];
  /** Resolves once no per-connection server process is left (every session has ended). */
  whenIdle(timeoutMs?: number): Promise<void>;
  /** Puts the sample mbox files back; call it only while the server is idle. */
  resetMaildrop(): void;
  /** RETR of every message straight from the server (USER/PASS), ended without QUIT so nothing changes. */
  fetchDirect(account: SampleAccount): Promise<Buffer[]>;
  /** The same with `TOP n 0`: every message's header, cheap enough to tell which messages are left. */
  headersDirect(account: SampleAccount): Promise<Buffer[]>;
  /** Stops every process of the instance and removes `dir`. Idempotent. */
  stop(): Promise<void>;
}

/** Where scripts/test-all.sh unpacks the servers. */
export const PEERS_DIR = process.env['POPWARDEN_PEERS_DIR'] ?? '/opt/popwarden-peers';

/** Service users the servers drop privileges to (created by their packages' postinst, here only inside the namespace). */
const SERVICE_UIDS: Record<string, number> = { popa3d: 20010, spop3d: 20011 };

interface ServerSpec {
  /** Binary, relative to PEERS_DIR. */
  readonly binary: string;
  /** The Debian package it comes from, for error messages. */
  readonly pkg: string;
  /** Service accounts the server needs in /etc/passwd. */
  readonly serviceUsers: readonly string[];
  /** Directories the server needs on the host (compiled-in paths). */
  readonly hostDirs: readonly string[];
  /** Writes the server's configuration into `dir` and returns its command-line arguments. */
  configure(dir: string, opts: LegacyOptions, tls: { cert: string; key: string } | undefined, peersDir: string): string[];
}

const SPECS: Record<LegacyServerKind, ServerSpec> = {
  // popa3d 1.0.3: USER/PASS only (PAM service "popa3d", absent, so PAM "other" = pam_unix), no
  // CAPA. Chroots its privilege-separated child into the compiled-in, empty /var/lib/popa3d.
  popa3d: {
    binary: 'popa3d/usr/sbin/popa3d',
    pkg: 'popa3d',
    serviceUsers: ['popa3d'],
    hostDirs: ['/var/lib/popa3d'],
    configure: () => [],
  },
  // GNU mailutils pop3d 3.15 with --inetd: USER/PASS against the system, APOP against its own
  // GDBM database written by its popauth tool, STLS with GnuTLS when configured.
  mailutils: {
    binary: 'mailutils-pop3d/usr/sbin/pop3d',
    pkg: 'mailutils-pop3d',
    serviceUsers: [],
    hostDirs: [],
    configure(dir, opts, tls, peersDir) {
      const apop = opts.apop ?? true;
      const apopDb = path.join(dir, 'etc', 'apop.db');
      if (apop) {
        const { alice, bob } = sampleMaildrop();
        const plain = path.join(dir, 'etc', 'apop.txt');
        fs.writeFileSync(plain, `${alice.user} ${alice.pass}\n${bob.user} ${bob.pass}\n`, { mode: 0o600 });
        const r = spawnSync(path.join(peersDir, 'mailutils-pop3d/usr/bin/popauth'), ['-c', '-f', plain, '-o', `gdbm://${apopDb}`, '-P', '600'], {
          encoding: 'utf8',
        });
        fs.rmSync(plain);
        if (r.status !== 0) throw new Error(`popauth could not build the APOP database: ${r.stderr}`);
      }
      // A global "tls-mode false" makes 3.15 demand a certificate in --inetd mode: say nothing then.
      const conf = [
        '# generated by popwarden test/harness/legacy.ts',
        'logging { syslog no; print-severity yes; };',
        ...(tls === undefined
          ? []
          : [
              'tls-mode stls;',
              `tls { ssl-certificate-file "${tls.cert}"; ssl-key-file "${tls.key}"; };`,
              'tls-file-checks { key-file none; cert-file none; ca-file none; };',
            ]),
        'mailbox { mail-spool "/var/mail"; mailbox-type mbox; };',
        'auth { authentication clear; authentication generic:system; authorization clear; authorization system; };',
        ...(apop ? [`apop-database-file "gdbm://${apopDb}";`, 'apop-database-owner root;', 'apop-database-safety none;'] : []),
        'tcp-wrappers { enable no; };',
        'login-delay 0;',
        'timeout 600;',
        '',
      ].join('\n');
      const file = path.join(dir, 'pop3d.conf');
      fs.writeFileSync(file, conf);
      const lint = spawnSync(path.join(peersDir, 'mailutils-pop3d/usr/sbin/pop3d'), [`--config-file=${file}`, '--config-lint'], { encoding: 'utf8' });
      if (lint.status !== 0) throw new Error(`bad generated mailutils config ${file}: ${lint.stderr}`);
      return [`--config-file=${file}`, '--inetd'];
    },
  },
  // solid-pop3d 0.15: USER/PASS (PAM), APOP with per-user secrets in ~/.spop3d, and a
  // timestamp in the greeting whenever AllowAPOP is on. Run with a stdin that is not a socket it
  // turns into a daemon on *:110, so it is only ever started with the socket as stdin.
  'solid-pop3d': {
    binary: 'solid-pop3d/usr/sbin/solid-pop3d',
    pkg: 'solid-pop3d',
    serviceUsers: ['spop3d'],
    hostDirs: [],
    configure(dir, opts) {
      const file = path.join(dir, 'spop3d.conf');
      fs.writeFileSync(
        file,
        [
          '<Global>',
          '\tMailDropName\t"/var/mail/%s"',
          '\tMailDropType\tmailbox',
          '\tAddBulletins\tno',
          '\tLogStatistics\tno',
          `\tAllowAPOP\t${opts.apop ?? true ? 'yes' : 'no'}`,
          '</Global>',
          '',
        ].join('\n'),
        { mode: 0o644 },
      );
      return ['-f', file];
    },
  },
};

/** Bind-mounts the instance's account files and spool, then runs the listener ($1 = instance dir). */
const NAMESPACE_SCRIPT = `set -e
mount --bind "$1/etc/passwd" /etc/passwd
mount --bind "$1/etc/shadow" /etc/shadow
mount --bind "$1/etc/group" /etc/group
mount --bind "$1/spool" /var/mail
shift
exec "$@"`;

/** unshare(1) from util-linux, by absolute path (an exec: backend's command must be one). */
const UNSHARE = '/usr/bin/unshare';

/** A sha512-crypt hash for /etc/shadow, made by openssl. */
function shadowHash(pass: string): string {
  const r = spawnSync('openssl', ['passwd', '-6', '-stdin'], { input: pass, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl passwd failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** The host's account files without the test names, plus the sample accounts and service users. */
function writeAccounts(dir: string, serviceUsers: readonly string[]): void {
  const { alice, bob } = sampleMaildrop();
  const ours = new Set([alice.user, bob.user, 'popwarden-mail', ...serviceUsers]);
  const hostLines = (file: string): string =>
    fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l !== '' && !ours.has(l.split(':')[0]!))
      .map((l) => `${l}\n`)
      .join('');
  let passwd = hostLines('/etc/passwd');
  let shadow = hostLines('/etc/shadow');
  let group = hostLines('/etc/group') + `popwarden-mail:x:${MAIL_GID}:\n`;
  for (const acct of [alice, bob]) {
    const home = path.join(dir, 'home', acct.user);
    fs.mkdirSync(home, { recursive: true, mode: 0o700 });
    fs.chownSync(home, acct.uid, MAIL_GID);
    passwd += `${acct.user}:x:${acct.uid}:${MAIL_GID}:popwarden sample:${home}:/usr/sbin/nologin\n`;
    shadow += `${acct.user}:${shadowHash(acct.pass)}:19000:0:99999:7:::\n`;
  }
  for (const name of serviceUsers) {
    const id = SERVICE_UIDS[name]!;
    passwd += `${name}:x:${id}:${id}:popwarden harness service user:/nonexistent:/usr/sbin/nologin\n`;
    shadow += `${name}:*:19000:0:99999:7:::\n`;
    group += `${name}:x:${id}:\n`;
  }
  const etc = path.join(dir, 'etc');
  fs.writeFileSync(path.join(etc, 'passwd'), passwd, { mode: 0o644 });
  fs.writeFileSync(path.join(etc, 'group'), group, { mode: 0o644 });
  fs.writeFileSync(path.join(etc, 'shadow'), shadow, { mode: 0o640 });
}

/** Writes alice's and bob's sample mbox files into dir/spool, owned by them, mode 600. */
function writeSpool(dir: string): void {
  const spool = path.join(dir, 'spool');
  for (const acct of Object.values(sampleMaildrop())) {
    const file = path.join(spool, acct.user);
    fs.rmSync(file, { force: true });
    fs.writeFileSync(file, toMbox(acct), { mode: 0o600 });
    fs.chownSync(file, acct.uid, MAIL_GID);
  }
}

/** A process of an instance: flagged when it is a zombie. */
interface ProcInfo {
  readonly pid: number;
  readonly ppid: number;
  readonly zombie: boolean;
}

/** Every process in process group or session `id` (zombies included, flagged). */
function instanceProcesses(id: number): ProcInfo[] {
  return processTable()
    .filter((p) => p.pgrp === id || p.session === id)
    .map((p) => ({ pid: p.pid, ppid: p.ppid, zombie: p.state === 'Z' }));
}

function signal(pids: readonly number[], sig: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  }
}

/** Polls `done` every 20 ms until it holds or `timeoutMs` passes; true if it held. */
async function pollUntil(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

/**
 * SIGKILL for the listener, the init of the instance's PID namespace: the kernel then kills and
 * reaps the servers, and `unshare` reaps the listener. Killing `unshare` too would leave the
 * listener's zombie to the host's PID 1.
 */
function killInstanceNow(leader: number): void {
  const listeners = instanceProcesses(leader).filter((p) => p.ppid === leader && !p.zombie).map((p) => p.pid);
  signal(listeners.length > 0 ? listeners : [leader], 'SIGKILL');
}

/** Instances still running, for the synchronous exit hook: leader pid -> instance dir. */
const live = new Map<number, string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const [pid, dir] of live) {
      killInstanceNow(pid);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

/** Throws a clear message when something this harness needs is missing. */
function checkPrerequisites(spec: ServerSpec, peersDir: string): string {
  const binary = path.join(peersDir, spec.binary);
  if (!fs.existsSync(binary)) {
    throw new Error(`${binary} is missing: run "sudo bash scripts/test-all.sh --install-only" (it unpacks ${spec.pkg} into ${peersDir})`);
  }
  const ldd = spawnSync('ldd', [binary], { encoding: 'utf8' });
  const missingLibs = ldd.stdout.split('\n').filter((l) => l.includes('not found'));
  if (missingLibs.length > 0) throw new Error(`${binary} lacks libraries (run scripts/test-all.sh --install-only): ${missingLibs.join('; ')}`);
  for (const tool of ['socat', 'unshare', 'setpriv', 'openssl']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) throw new Error(`${tool} is not installed (run scripts/test-all.sh --install-only)`);
  }
  if (process.getuid?.() !== 0) throw new Error('legacy servers need root: they run in a private mount namespace and switch uid');
  for (const d of spec.hostDirs) {
    if (!fs.existsSync(d)) throw new Error(`${d} is missing (scripts/test-all.sh --install-only creates it)`);
  }
  return binary;
}

/** Reads the greeting and CAPA on a fresh connection, retrying while nothing listens yet. */
async function probeOffers(host: string, port: number, listenerExited: Promise<string>, timeoutMs: number): Promise<LegacyOffers> {
  const deadline = Date.now() + timeoutMs;
  let exitReason: string | undefined;
  void listenerExited.then((reason) => (exitReason = reason));
  for (;;) {
    if (exitReason !== undefined) throw new Error(`the listener exited before serving: ${exitReason}`);
    let conn: Awaited<ReturnType<typeof connectPop>>;
    try {
      conn = await connectPop({ host, port, timeoutMs: 10_000 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ECONNREFUSED' || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 25));
      continue;
    }
    try {
      if (!conn.greeting.startsWith('+OK')) throw new Error(`the server greeted with ${JSON.stringify(conn.greeting)}`);
      const { status, body } = await conn.multi('CAPA');
      const capa = status.startsWith('+OK') ? body.toString('latin1').split('\r\n').filter((l) => l !== '') : undefined;
      await conn.command('QUIT');
      const upper = (capa ?? []).map((l) => l.toUpperCase());
      return {
        greeting: conn.greeting,
        apopTimestamp: /<[^<>@\s]+@[^<>\s]+>/.test(conn.greeting),
        capa,
        stls: upper.includes('STLS'),
        sasl: (upper.find((l) => l.startsWith('SASL ')) ?? '').split(/\s+/).slice(1),
      };
    } finally {
      conn.close();
    }
  }
}

/**
 * Starts `opts.server` on a free 127.0.0.1 port, inetd-style, with the sample maildrop (alice,
 * bob) as mbox files, and returns once it has greeted a probe connection.
 */
export async function startLegacyServer(opts: LegacyOptions): Promise<LegacyServer> {
  const spec = SPECS[opts.server];
  if (opts.stls === true && opts.server !== 'mailutils') throw new Error(`${opts.server} has no STLS`);
  const peersDir = opts.peersDir ?? PEERS_DIR;
  const binary = checkPrerequisites(spec, peersDir);
  const host = '127.0.0.1';
  // The servers switch to the mailbox owner's uid: the directory must be traversable by them.
  const dir = fs.mkdtempSync(`/tmp/popwarden-legacy-${opts.server}-`);
  fs.chmodSync(dir, 0o755);
  let pid: number | undefined;
  try {
    for (const sub of ['etc', 'home', 'spool']) fs.mkdirSync(path.join(dir, sub), { mode: 0o755 });
    fs.chmodSync(path.join(dir, 'spool'), 0o1777); // mbox locking creates dot-lock files there
    writeAccounts(dir, spec.serviceUsers);
    writeSpool(dir);
    let caFile: string | undefined;
    let tls: { cert: string; key: string } | undefined;
    if (opts.stls === true) {
      const cert = makeNamedCertificate(dir, 'stls', ['localhost', '127.0.0.1']);
      caFile = cert.caFile;
      tls = { cert: cert.certFile, key: cert.keyFile };
    }
    const args = spec.configure(dir, opts, tls, peersDir);
    const launcher = path.join(dir, 'launch.sh');
    fs.writeFileSync(launcher, `#!/bin/sh\nexec ${[binary, ...args].map((a) => `'${a}'`).join(' ')}\n`, { mode: 0o755 });

    const port = await freePort(host);
    const logFile = path.join(dir, 'server.log');
    const out = fs.openSync(logFile, 'a');
    const child = spawn(
      'setpriv',
      [
        '--pdeathsig', 'KILL', '--',
        'unshare', '--mount', '--propagation', 'private', '--pid', '--fork', '--kill-child=KILL',
        'sh', '-c', NAMESPACE_SCRIPT, 'popwarden-legacy-ns', dir,
        'socat', '-d', '-d', `TCP-LISTEN:${port},bind=${host},reuseaddr,fork`, `EXEC:${launcher},nofork`,
      ],
      { detached: true, stdio: ['ignore', out, out] },
    );
    fs.closeSync(out);
    if (child.pid === undefined) throw new Error('could not spawn setpriv');
    const leader = child.pid;
    pid = leader;
    live.set(leader, dir);
    installExitHook();
    const exited = new Promise<string>((resolve) => child.once('exit', (code, sig) => resolve(`exit ${code ?? sig}`)));
    child.once('error', () => undefined);

    let offers: LegacyOffers;
    try {
      offers = await probeOffers(host, port, exited, 10_000);
    } catch (error) {
      const tail = fs.readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n');
      throw new Error(`${opts.server} did not serve on ${host}:${port}: ${(error as Error).message}\n${tail}`);
    }

    const alive = (): ProcInfo[] => instanceProcesses(leader).filter((p) => !p.zombie);
    const processes = (): number[] => {
      const all = alive().map((p) => p.pid);
      return [...all.filter((p) => p === leader), ...all.filter((p) => p !== leader)];
    };
    // Below the leader runs the listener (socat); below that, one server per connection.
    const servers = (): number[] => alive().filter((p) => p.pid !== leader && p.ppid !== leader).map((p) => p.pid);
    const whenIdle = async (timeoutMs = 10_000): Promise<void> => {
      if (!(await pollUntil(() => servers().length === 0, timeoutMs))) {
        throw new Error(`${opts.server}: sessions still running after ${timeoutMs} ms: ${servers().join(' ')}`);
      }
    };

    let stopped: Promise<void> | undefined;
    const stop = (): Promise<void> =>
      (stopped ??= (async () => {
        // `unshare --fork` ignores SIGTERM while it waits; its child, the listener, is the
        // namespace's init: when it exits the kernel kills and reaps the rest, unshare reaps the
        // listener and exits, and Node reaps unshare. Nothing is left to the host's PID 1.
        const listener = (): number[] => alive().filter((p) => p.ppid === leader).map((p) => p.pid);
        signal(listener(), 'SIGTERM');
        if (!(await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 3_000).unref())]))) {
          signal(listener(), 'SIGKILL');
          await exited;
        }
        // A server that somehow left the namespace would still be in the session.
        if (!(await pollUntil(() => alive().length === 0, 3_000))) signal(processes(), 'SIGKILL');
        live.delete(leader);
        fs.rmSync(dir, { recursive: true, force: true });
      })());

    const label = opts.server + (opts.stls === true ? '+stls' : '') + (opts.apop === false ? '-apop' : '');
    return {
      kind: opts.server,
      label,
      host,
      port,
      offers,
      dir,
      pid: leader,
      logFile,
      processes,
      whenIdle,
      exec: {
        command: UNSHARE,
        args: ['--mount', '--propagation', 'private', '--pid', '--fork', '--kill-child=KILL', '/bin/sh', '-c', NAMESPACE_SCRIPT, 'popwarden-legacy-ns', dir, launcher],
      },
      resetMaildrop: () => writeSpool(dir),
      fetchDirect: (account) => readEveryMessage(host, port, account, (n) => `RETR ${n}`),
      headersDirect: (account) => readEveryMessage(host, port, account, (n) => `TOP ${n} 0`),
      stop,
      ...(caFile === undefined ? {} : { caFile }),
    };
  } catch (error) {
    if (pid !== undefined) {
      killInstanceNow(pid);
      live.delete(pid);
    }
    fs.rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

/**
 * What `server` serves `account` directly, once it has settled: mailutils stamps X-IMAPbase/X-UID
 * headers into the mbox when a session first opens it, so the bytes count only once a second
 * fetch agrees with the first. Returns with the server idle.
 */
export async function settledMessages(server: LegacyServer, account: SampleAccount): Promise<Buffer[]> {
  let previous = await server.fetchDirect(account);
  for (let attempt = 0; attempt < 2; attempt++) {
    await server.whenIdle();
    const again = await server.fetchDirect(account);
    await server.whenIdle();
    if (again.length === previous.length && again.every((m, i) => m.equals(previous[i]!))) return again;
    previous = again;
  }
  throw new Error(`${server.label} serves different bytes on every direct fetch`);
}

/** Logs in with USER/PASS, sends `command(n)` for every message, and drops the connection without QUIT. */
async function readEveryMessage(host: string, port: number, account: SampleAccount, command: (n: number) => string): Promise<Buffer[]> {
  const conn = await connectPop({ host, port, timeoutMs: 30_000 });
  try {
    const login = await conn.login(account.user, account.pass, 'user');
    if (!login.startsWith('+OK')) throw new Error(`direct login as ${account.user} failed: ${login}`);
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
