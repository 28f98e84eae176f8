/**
 * The backend-form dimension: how popwarden is pointed at a running server, with a recording tap
 * on the link so every cell can prove what crossed it.
 */
import type { BackendConfig } from '../../src/config/types.js';
import { startTap, type Tap } from '../harness/tap.js';
import type { BackendForm, RunningServer } from './servers.js';

/** popwarden's way to one server, tapped. */
export interface FormLink {
  /** popwarden's backend address settings for this form. */
  readonly backend: Pick<BackendConfig, 'host' | 'port'> & Partial<BackendConfig>;
  readonly tap: Tap;
  stop(): Promise<void>;
}

/** Points a tapped link of `form` at `server`. */
export async function linkFor(form: BackendForm, server: RunningServer): Promise<FormLink> {
  switch (form) {
    case 'tcp': {
      const tap = await startTap(server.host, server.port);
      return { backend: { host: tap.host, port: tap.port }, tap, stop: () => tap.stop() };
    }
    case 'exec':
    case 'unix':
      throw new Error(`popwarden has no ${form}: backend yet (issue 12 points 1 and 2)`);
  }
}
