import type { AddressInfo } from 'node:net';
import type { Config, ListenerConfig } from './config/types.js';
import type { Logger } from './observability/log.js';
import type { TlsMaterial } from './net/tls-context.js';

/** A listener after bind: its configuration and the address the kernel gave it (port 0 in tests). */
export interface BoundListener {
  readonly config: ListenerConfig;
  readonly address: AddressInfo;
}

/** A started popwarden: what it listens on, and how to stop it. */
export interface RunningProxy {
  readonly listeners: readonly BoundListener[];
  /** Stops accepting, closes every session, resolves when all sockets are gone. */
  close(): Promise<void>;
}

export interface ProxyDependencies {
  readonly log: Logger;
  readonly tls: TlsMaterial;
}

/** Binds every listener (all or nothing) and serves sessions until close(). */
export async function startPopwarden(_config: Config, _deps: ProxyDependencies): Promise<RunningProxy> {
  throw new Error('not implemented yet');
}
