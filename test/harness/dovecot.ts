/**
 * A real Dovecot POP3 server (Debian dovecot-core + dovecot-pop3d) with a throwaway config and the
 * sample maildrop, started per test file. Profiles pick the mechanisms the backend offers so tests
 * can prove which one popwarden used.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { freePort, waitForPort } from './ports.js';
import { processTable } from './proc.js';
import { whenFileShows } from './file-watch.js';
import { readEveryMessage, type DirectLogin } from './clients.js';
import { MAIL_GID, sampleMaildrop, writeMaildir, type SampleAccount } from './maildrop.js';
import { startTap, type Tap } from './tap.js';

/** Which mechanisms the started Dovecot offers (see the table in startDovecot's TSDoc). */
export type DovecotProfile = 'all' | 'apop-only' | 'cram-md5-only' | 'user-only' | 'stls';

/** Options for startDovecot. */
export interface DovecotOptions {
  profile: DovecotProfile;
  /** 'stls' only: also open an implicit-TLS (POP3S) listener. */
  pop3sPort?: boolean;
  /** Listen on this port (e.g. one a stopped instance used) instead of a free one. */
  port?: number;
  /** With the stls profile: demand a client certificate signed by this CA (PEM) on TLS logins. */
  clientCaFile?: string;
  /**
   * With the stls profile: the only names its certificate covers (its CN names none of them).
   * Default `DNS:localhost,IP:127.0.0.1`, with CN localhost.
   */
  subjectAltName?: string;
  /**
   * false: switch the auth penalty off the way the README tells operators to (anvil's
   * auth-penalty socket at mode 0). Default: on, as Dovecot ships.
   */
  authPenalty?: boolean;
  /** Dovecot's own `auth_failure_delay` (default 2 secs); `0` keeps penalty tests short. */
  authFailureDelay?: string;
  /** Dovecot's auth_username_format, e.g. "%Ln": drop the domain, so alice@anything logs in as alice. */
  authUsernameFormat?: string;
  /** Only these sample accounts exist on this instance (default both): two instances with different users. */
  accounts?: readonly ('alice' | 'bob')[];
  /**
   * The POP3 listener requires a PROXY protocol header (`haproxy = yes`) from loopback
   * (`haproxy_trusted_networks`), as behind a load balancer.
   */
  haproxy?: boolean;
  /** Dovecot's login_trusted_networks: clients from these may send XCLIENT (advertised in their CAPA). */
  loginTrustedNetworks?: string;
  /**
   * Hundreds of sessions of one user from one address at once (the idle-session memory test):
   * no per-user-and-address cap, and processes that serve many sessions each (as the bench's
   * Dovecot, bench/backend.ts) rather than one process per session under the default limit of 100.
   */
  manySessions?: boolean;
}

/**
 * Dovecot's passdb and userdb over one passwd-file of plain passwords, with mail in Maildir under
 * each home; the bench's Dovecot (bench/backend.ts) uses the same.
 */
export function passwdFileDatabases(passwdFile: string): string {
  return `passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${passwdFile}
}
userdb {
  driver = passwd-file
  args = username_format=%u ${passwdFile}
}
first_valid_uid = 1000
mail_location = maildir:~`;
}

/** A running Dovecot instance. */
export interface Dovecot {
  readonly host: string;
  readonly port: number;
  readonly pop3sPort?: number;
  readonly profile: DovecotProfile;
  /** The temp dir holding config, maildirs, cert and log; removed by stop(). */
  readonly dir: string;
  /** 'stls' only: the self-signed certificate (CN/SAN localhost, SAN IP 127.0.0.1) to trust. */
  readonly caFile?: string;
  /** PID of the Dovecot master (also its process group and session id). */
  readonly pid: number;
  readonly logFile: string;
  /** Stops every process of the instance (TERM, KILL after 5 s) and removes `dir`. */
  stop(): Promise<void>;
  /** Successful logins Dovecot logged (optionally for one user) since it started. */
  loginCount(user?: string): number;
  /** Successful logins with their mechanism as Dovecot logs it (USER/PASS shows as PLAIN). */
  logins(): { user: string; method: string }[];
  /**
   * Dovecot logs asynchronously (its log process): resolves with what `probe` finds once the log
   * shows it, re-probing on every write to the log file; undefined after `timeoutMs`.
   */
  whenLogged<T>(probe: () => T | undefined, timeoutMs?: number): Promise<T | undefined>;
  /** Resolves once no pop3 mail process is left (every session has ended and committed its changes). */
  whenIdle(timeoutMs?: number): Promise<void>;
  /** Writes the sample maildrops afresh (Dovecot's indexes too); call it only while idle. */
  resetMaildrop(): void;
  /** RETR of every message straight from Dovecot with the profile's own mechanism, ended without QUIT. */
  fetchDirect(account: SampleAccount): Promise<Buffer[]>;
  /** The same with `TOP n 0`. */
  headersDirect(account: SampleAccount): Promise<Buffer[]>;
}

interface Profile {
  mechanisms: string;
  tls: boolean;
  /** How the harness logs in directly (fetchDirect): one the profile accepts; STLS first when `tls`. */
  direct: DirectLogin['mechanism'];
}

const PROFILES: Record<DovecotProfile, Profile> = {
  // USER/PASS is Dovecot's PLAIN mechanism internally: without "plain" USER is not offered and
  // PASS fails, which is what lets apop-only/cram-md5-only prove which mechanism was used.
  all: { mechanisms: 'plain login cram-md5 apop', tls: false, direct: 'user' },
  'apop-only': { mechanisms: 'apop', tls: false, direct: 'apop' },
  'cram-md5-only': { mechanisms: 'cram-md5', tls: false, direct: 'cram-md5' },
  'user-only': { mechanisms: 'plain login', tls: false, direct: 'user' },
  stls: { mechanisms: 'plain login cram-md5 apop', tls: true, direct: 'user' },
};

/** Every process in session `sid` (Dovecot's children stay in the master's session), or only those whose comm is `comm`. */
function sessionPids(sid: number, comm?: string): number[] {
  // Zombies (state Z) are already dead; they only wait for init to reap them.
  return processTable()
    .filter((p) => p.session === sid && p.state !== 'Z' && (comm === undefined || p.comm === comm))
    .map((p) => p.pid);
}

function signalSession(sid: number, sig: NodeJS.Signals): void {
  for (const pid of sessionPids(sid)) {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  }
}

/** Instances still running, for the synchronous exit hook. */
const live = new Map<number, { dir: string; watchdog: number | undefined }>();
let hooksInstalled = false;

function killNowSync(pid: number): void {
  const inst = live.get(pid);
  signalSession(pid, 'SIGKILL');
  if (inst) {
    if (inst.watchdog !== undefined) signalSession(inst.watchdog, 'SIGKILL');
    fs.rmSync(inst.dir, { recursive: true, force: true });
  }
  live.delete(pid);
}

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => {
    for (const pid of [...live.keys()]) killNowSync(pid);
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      for (const pid of [...live.keys()]) killNowSync(pid);
      process.removeListener(sig, onSignal);
      // Only re-raise when nobody else handles the signal, so the default action (exit) happens.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

function passwdLine(user: string, pass: string, uid: number, home: string): string {
  return `${user}:{PLAIN}${pass}:${uid}:${MAIL_GID}::${home}::\n`;
}

function makeCert(tlsDir: string, subjectAltName: string | undefined): string {
  fs.mkdirSync(tlsDir, { recursive: true, mode: 0o755 });
  const key = path.join(tlsDir, 'key.pem');
  const cert = path.join(tlsDir, 'cert.pem');
  const r = spawnSync(
    'openssl',
    [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
      // Node checks the CN when the certificate has no DNS name: it must not name the host then.
      '-subj', subjectAltName === undefined ? '/CN=localhost' : '/CN=popwarden test backend',
      '-addext', `subjectAltName=${subjectAltName ?? 'DNS:localhost,IP:127.0.0.1'}`, '-keyout', key, '-out', cert,
    ],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`openssl req failed: ${r.stderr}`);
  fs.chmodSync(key, 0o600);
  return cert;
}

/**
 * Starts Dovecot on a free 127.0.0.1 port with the sample maildrop and the given profile:
 * 'all' (APOP timestamp, SASL PLAIN LOGIN CRAM-MD5, USER), 'apop-only' (timestamp, no SASL, USER
 * refused), 'cram-md5-only' (SASL CRAM-MD5, no timestamp, USER refused), 'user-only' (USER and
 * SASL PLAIN LOGIN, no timestamp) or 'stls' (all mechanisms, STLS, self-signed cert,
 * disable_plaintext_auth = yes, optional implicit POP3S port).
 */
export async function startDovecot(opts: DovecotOptions): Promise<Dovecot> {
  const profile = PROFILES[opts.profile];
  if (opts.pop3sPort && !profile.tls) throw new Error('pop3sPort needs the stls profile');
  if (spawnSync('dovecot', ['--version']).status !== 0) throw new Error('dovecot is not installed (run npm run test:all)');
  if (!fs.existsSync('/usr/lib/dovecot/pop3')) throw new Error('dovecot-pop3d is not installed');

  const host = '127.0.0.1';
  // The mail processes run as uid 20001/20002 and the auth process as "dovecot": /tmp is
  // traversable by everyone, a mkdtemp dir is 0700 and must be opened up.
  const dir = fs.mkdtempSync('/tmp/popwarden-dovecot-');
  fs.chmodSync(dir, 0o755);
  try {
    const port = opts.port ?? (await freePort(host));
    const pop3sPort = opts.pop3sPort ? await freePort(host) : undefined;
    for (const d of ['run', 'state', 'etc', 'mail']) fs.mkdirSync(path.join(dir, d), { mode: 0o755 });

    const { alice, bob } = sampleMaildrop();
    const accounts = opts.accounts ?? ['alice', 'bob'];
    const served = [alice, bob].filter((a) => accounts.includes(a.user as 'alice' | 'bob'));
    const writeMaildrops = (): void => {
      for (const acct of served) {
        const home = path.join(dir, 'mail', acct.user);
        fs.rmSync(home, { recursive: true, force: true });
        writeMaildir(home, acct, { chown: true });
      }
    };
    writeMaildrops();
    let passwd = '';
    for (const acct of served) passwd += passwdLine(acct.user, acct.pass, acct.uid, path.join(dir, 'mail', acct.user));
    const passwdFile = path.join(dir, 'etc', 'passwd.dovecot');
    fs.writeFileSync(passwdFile, passwd, { mode: 0o640 });
    spawnSync('chgrp', ['dovecot', passwdFile]);
    // The uid check dovecot.sh does with setpriv: fail early with a clear message.
    const first = accounts[0] === 'bob' ? bob : alice;
    const probe = spawnSync('setpriv', [
      `--reuid=${first.uid}`, `--regid=${MAIL_GID}`, '--clear-groups', 'test', '-x', path.join(dir, 'mail', first.user),
    ]);
    if (probe.status !== 0) throw new Error(`uid ${first.uid} cannot reach ${dir}/mail/${first.user}`);

    let caFile: string | undefined;
    let ssl = 'ssl = no';
    let pop3s = 'inet_listener pop3s {\n    port = 0\n  }';
    if (profile.tls) {
      caFile = makeCert(path.join(dir, 'tls'), opts.subjectAltName);
      ssl = [
        'ssl = yes',
        `ssl_cert = <${path.join(dir, 'tls', 'cert.pem')}`,
        `ssl_key = <${path.join(dir, 'tls', 'key.pem')}`,
        'ssl_min_protocol = TLSv1.2',
        ...(opts.clientCaFile === undefined
          ? []
          : [`ssl_ca = <${opts.clientCaFile}`, 'ssl_verify_client_cert = yes', 'ssl_require_crl = no', 'auth_ssl_require_client_cert = yes']),
      ].join('\n');
      pop3s = pop3sPort
        ? `inet_listener pop3s {\n    address = ${host}\n    port = ${pop3sPort}\n    ssl = yes\n  }`
        : pop3s;
    }
    const logFile = path.join(dir, 'dovecot.log');
    const conf = `# generated by popwarden test/harness/dovecot.ts (${opts.profile})
protocols = pop3
listen = ${host}
base_dir = ${dir}/run
state_dir = ${dir}/state
instance_name = popwarden-dovecot-${port}
log_path = ${logFile}
info_log_path = ${logFile}
auth_verbose = yes
login_greeting = Dovecot (popwarden harness) ready.

${ssl}
disable_plaintext_auth = ${profile.tls ? 'yes' : 'no'}
auth_mechanisms = ${profile.mechanisms}
${opts.authFailureDelay === undefined ? '' : `auth_failure_delay = ${opts.authFailureDelay}`}
${opts.authUsernameFormat === undefined ? '' : `auth_username_format = ${opts.authUsernameFormat}`}
${opts.haproxy === true ? 'haproxy_trusted_networks = 127.0.0.0/8' : ''}
${opts.loginTrustedNetworks === undefined ? '' : `login_trusted_networks = ${opts.loginTrustedNetworks}`}

${passwdFileDatabases(passwdFile)}

pop3_enable_last = yes
pop3_uidl_format = %f
${opts.manySessions === true ? 'mail_max_userip_connections = 0\nservice pop3 {\n  service_count = 0\n  client_limit = 1000\n}' : ''}

service pop3-login {
  inet_listener pop3 {
    address = ${host}
    port = ${port}${opts.haproxy === true ? '\n    haproxy = yes' : ''}
  }
  ${pop3s}${opts.manySessions === true ? '\n  service_count = 0\n  client_limit = 1000' : ''}
}
service anvil {
  chroot =
${opts.authPenalty === false ? '  unix_listener anvil-auth-penalty {\n    mode = 0\n  }' : ''}
}
service stats {
  unix_listener stats-reader {
    mode = 0600
  }
  unix_listener stats-writer {
    mode = 0600
  }
}
`;
    const confFile = path.join(dir, 'dovecot.conf');
    fs.writeFileSync(confFile, conf);
    fs.writeFileSync(logFile, '');
    const check = spawnSync('dovecot', ['-c', confFile, '-n'], { encoding: 'utf8' });
    if (check.status !== 0) throw new Error(`bad generated dovecot config: ${check.stderr}`);

    const out = fs.openSync(path.join(dir, 'dovecot.stdout'), 'a');
    const child = spawn('dovecot', ['-F', '-c', confFile], { detached: true, stdio: ['ignore', out, out] });
    fs.closeSync(out);
    child.unref();
    const childExited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    const pid = child.pid;
    if (pid === undefined) throw new Error('could not spawn dovecot');
    // If this process dies without running its exit hook (SIGKILL), the watchdog stops Dovecot.
    const wd = spawn(
      'sh',
      [
        '-c',
        'while kill -0 "$1" 2>/dev/null; do sleep 1; done; ' +
          'for p in $(ps -eo pid=,sid= | awk -v s="$2" \'$2 == s {print $1}\'); do kill -KILL "$p" 2>/dev/null; done; ' +
          'rm -rf "$3"',
        'popwarden-dovecot-watchdog',
        String(process.pid),
        String(pid),
        dir,
      ],
      { detached: true, stdio: 'ignore' },
    );
    wd.unref();
    live.set(pid, { dir, watchdog: wd.pid });
    installExitHooks();

    try {
      await Promise.race([
        (async () => {
          await waitForPort(host, port, 15_000);
          if (pop3sPort) await waitForPort(host, pop3sPort, 5_000);
        })(),
        new Promise<never>((_, reject) =>
          child.once('exit', (code) => reject(new Error(`dovecot exited with ${code}`))),
        ),
      ]);
    } catch (err) {
      const log = fs.readFileSync(logFile, 'utf8') + fs.readFileSync(path.join(dir, 'dovecot.stdout'), 'utf8');
      killNowSync(pid);
      throw new Error(`${(err as Error).message}\n${log.split('\n').slice(-20).join('\n')}`);
    }

    const logins = (): { user: string; method: string }[] => {
      let text = '';
      try {
        text = fs.readFileSync(logFile, 'utf8');
      } catch {
        return [];
      }
      const res: { user: string; method: string }[] = [];
      for (const m of text.matchAll(/pop3-login: Info: Login: user=<([^>]*)>, method=([A-Z0-9-]+)/g)) {
        res.push({ user: m[1]!, method: m[2]! });
      }
      return res;
    };

    let stopped: Promise<void> | undefined;
    const stop = (): Promise<void> =>
      (stopped ??= (async () => {
        const inst = live.get(pid);
        signalSession(pid, 'SIGTERM');
        const deadline = Date.now() + 5_000;
        while (sessionPids(pid).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        signalSession(pid, 'SIGKILL');
        // Let Node reap the master, so its pid is really gone when stop() resolves.
        let reapTimer: NodeJS.Timeout | undefined;
        await Promise.race([childExited, new Promise((r) => (reapTimer = setTimeout(r, 2_000)))]);
        clearTimeout(reapTimer);
        if (inst?.watchdog !== undefined) signalSession(inst.watchdog, 'SIGKILL');
        live.delete(pid);
        fs.rmSync(dir, { recursive: true, force: true });
      })());

    // The pop3 service runs one process per session (service_count = 1): none left, no session left.
    const whenIdle = async (timeoutMs = 10_000): Promise<void> => {
      const deadline = Date.now() + timeoutMs;
      while (sessionPids(pid, 'pop3').length > 0) {
        if (Date.now() > deadline) throw new Error(`dovecot: pop3 sessions still running after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const direct: DirectLogin = { mechanism: profile.direct, ...(caFile === undefined ? {} : { stlsCaFile: caFile }) };

    const result: Dovecot = {
      whenIdle,
      resetMaildrop: writeMaildrops,
      fetchDirect: (account) => readEveryMessage(host, port, account, direct, (n) => `RETR ${n}`),
      headersDirect: (account) => readEveryMessage(host, port, account, direct, (n) => `TOP ${n} 0`),
      host,
      port,
      profile: opts.profile,
      dir,
      pid,
      logFile,
      stop,
      logins,
      loginCount: (user) => logins().filter((l) => user === undefined || l.user === user).length,
      whenLogged: (probe, timeoutMs = 5_000) => whenFileShows(logFile, probe, timeoutMs),
      ...(pop3sPort !== undefined ? { pop3sPort } : {}),
      ...(caFile !== undefined ? { caFile } : {}),
    };
    return result;
  } catch (err) {
    if (![...live.values()].some((v) => v.dir === dir)) fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * A real Dovecot (no auth penalty, no failure delay) behind a recording tap, for `body`; `swap`
 * replaces it on its port by one with another profile (a changed backend, or an impostor).
 */
export async function withDovecotBehindTap(
  profile: DovecotProfile,
  body: (tap: Tap, swap: (next: DovecotProfile) => Promise<void>) => Promise<void>,
): Promise<void> {
  let dovecot: Dovecot = await startDovecot({ profile, authPenalty: false, authFailureDelay: '0' });
  const tap = await startTap(dovecot.host, dovecot.port);
  try {
    await body(tap, async (next) => {
      const port = dovecot.port;
      await dovecot.stop();
      dovecot = await startDovecot({ profile: next, port, authPenalty: false, authFailureDelay: '0' });
    });
  } finally {
    await tap.stop();
    await dovecot.stop();
  }
}
