/**
 * A legacy server behind a UNIX socket, socket-activated one process per connection: what the
 * systemd unit in contrib/systemd (Accept=yes) gives a host, stood in for by
 * `systemd-socket-activate --accept --inetd`, which listens on the path and runs `command` for
 * each connection with the accepted socket as stdin and stdout. For popwarden's `backend: unix:`.
 *
 *   const server = await startLegacyServer({ server: 'popa3d' });
 *   const activated = await startSocketActivated(server.exec);
 *   startTestProxy({ backend: { address: { kind: 'unix', path: activated.path } } });
 *
 * The socket lives in a fresh directory (mode 0700, in the temporary directory), so popwarden's
 * trust rule for UNIX sockets holds. Everything dies with the test process (setpriv --pdeathsig).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface SocketActivated {
  /** The listening socket's path. */
  readonly path: string;
  /** Its directory (mode 0700), removed by stop(). */
  readonly dir: string;
  /** systemd-socket-activate's pid. */
  readonly pid: number;
  /** What it and the servers wrote to stderr. */
  log(): string;
  /** Stops the listener (its children end with their connections) and removes `dir`. */
  stop(): Promise<void>;
}

/** Starts the listener and returns once a connection to it gets a greeting. */
export async function startSocketActivated(program: { readonly command: string; readonly args: readonly string[] }): Promise<SocketActivated> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'popwarden-activated-'));
  const socketPath = path.join(dir, 'pop3.sock');
  const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', 'systemd-socket-activate', '--accept', '--inetd', '-l', socketPath, program.command, ...program.args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr = (stderr + text).slice(-20_000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('error', () => undefined);
  try {
    await firstGreeting(socketPath, exited, 10_000);
  } catch (error) {
    child.kill('SIGKILL');
    await exited;
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`systemd-socket-activate did not serve ${socketPath}: ${(error as Error).message}\n${stderr}`);
  }
  let stopped: Promise<void> | undefined;
  return {
    path: socketPath,
    dir,
    pid: child.pid!,
    log: () => stderr,
    stop: () =>
      (stopped ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          await exited;
        }
        fs.rmSync(dir, { recursive: true, force: true });
      })()),
  };
}

/** Connects (retrying while the path does not exist yet) until a greeting line arrives. */
async function firstGreeting(socketPath: string, exited: Promise<void>, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let gone = false;
  void exited.then(() => (gone = true));
  for (;;) {
    if (gone) throw new Error('the listener exited');
    try {
      return await new Promise<string>((resolve, reject) => {
        const socket = net.connect(socketPath);
        let text = '';
        socket.setTimeout(Math.max(1, deadline - Date.now()), () => socket.destroy(new Error('no greeting in time')));
        socket.on('data', (chunk) => {
          text += chunk.toString('latin1');
          if (text.includes('\n')) {
            socket.end('QUIT\r\n');
            resolve(text.trim());
          }
        });
        socket.on('error', reject);
      });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if ((code !== 'ENOENT' && code !== 'ECONNREFUSED') || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
}
