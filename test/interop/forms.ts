/**
 * The backend-form dimension: how popwarden is pointed at a running server, with a recording tap
 * on the link so every cell can prove what crossed it.
 *
 *   tcp:  popwarden --TCP--> tap (tap.ts) --> the server's inetd-style listener
 *   exec: popwarden spawns, per session, recorder (recorded-program.ts) --> the server on stdin/stdout
 *   unix: popwarden --UNIX socket--> systemd-socket-activate --accept --inetd, which runs the
 *         recorder --> the server for each connection (socket-activated.ts)
 *
 * exec and unix run the same server instance's `exec` program (its namespace, accounts and spool),
 * so the instance's TCP listener still reads the maildrop directly for the reference bytes.
 */
import type { BackendOverrides } from '../harness/popwarden.js';
import { recordProgram, type Program } from '../harness/recorded-program.js';
import { startSocketActivated } from '../harness/socket-activated.js';
import { startTap } from '../harness/tap.js';
import type { BackendForm } from './servers.js';

/** popwarden's way to one server, tapped. */
export interface FormLink {
  /** popwarden's backend address settings for this form. */
  readonly backend: BackendOverrides;
  /** Every byte popwarden sent on the link so far, session after session. */
  clientToServer(): Buffer;
  /** Resolves once every session popwarden opened on the link has ended (and its server with it). */
  whenIdle(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** Where a server can be reached: its TCP listener, and the program inetd would run for one session. */
export interface Reachable {
  readonly host: string;
  readonly port: number;
  readonly exec?: Program;
}

/** Points a tapped link of `form` at `server`. */
export async function linkFor(form: BackendForm, server: Reachable): Promise<FormLink> {
  if (form === 'tcp') {
    const tap = await startTap(server.host, server.port);
    return {
      backend: { host: tap.host, port: tap.port },
      clientToServer: () => tap.bytesClientToServer(),
      // The server's own sessions are the link's: RunningServer.whenIdle covers them.
      whenIdle: async () => undefined,
      stop: () => tap.stop(),
    };
  }
  if (server.exec === undefined) throw new Error(`this server cannot run from inetd, so not as an ${form}: backend`);
  // popwarden's exec: spawn gives each program a session of its own; the socket activator does not.
  const recorded = recordProgram(server.exec, { ownSession: form === 'unix' });
  // The default trust rule: a program popwarden starts, or a socket in a directory only root and
  // popwarden may change, is a link nobody else can stand in on.
  const trust = { trustLoopback: undefined };
  if (form === 'exec') {
    return {
      backend: { ...trust, address: { kind: 'exec', command: recorded.command, args: recorded.args, environment: {}, cwd: undefined } },
      clientToServer: () => recorded.clientToServer(),
      whenIdle: (timeoutMs) => recorded.whenIdle(timeoutMs),
      stop: async () => recorded.stop(),
    };
  }
  try {
    const activated = await startSocketActivated(recorded);
    return {
      backend: { ...trust, address: { kind: 'unix', path: activated.path } },
      clientToServer: () => recorded.clientToServer(),
      whenIdle: (timeoutMs) => recorded.whenIdle(timeoutMs),
      stop: async () => {
        await activated.stop();
        recorded.stop();
      },
    };
  } catch (error) {
    recorded.stop();
    throw error;
  }
}
