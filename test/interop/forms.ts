/**
 * The backend-form dimension: how popwarden is pointed at a running server, with a recording tap
 * on the link so every cell can prove what crossed it.
 */
import type { BackendOverrides } from '../harness/popwarden.js';
import { startTap, type Tap } from '../harness/tap.js';
import type { BackendForm, RunningServer } from './servers.js';

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

/** Points a tapped link of `form` at `server`. */
export async function linkFor(form: BackendForm, server: RunningServer): Promise<FormLink> {
  switch (form) {
    case 'tcp': {
      const tap: Tap = await startTap(server.host, server.port);
      return {
        backend: { host: tap.host, port: tap.port },
        clientToServer: () => tap.bytesClientToServer(),
        // The server's own sessions are the link's: RunningServer.whenIdle covers them.
        whenIdle: async () => undefined,
        stop: () => tap.stop(),
      };
    }
    case 'exec':
    case 'unix':
      throw new Error(`popwarden has no ${form}: backend yet (issue 12 points 1 and 2)`);
  }
}
