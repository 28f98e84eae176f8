import type { Config } from '../config/types.js';
import type { Logger } from '../observability/log.js';
import type { Metrics } from '../observability/metrics.js';
import { ALLOW_ALL, type LoginGuard } from './login-guard.js';
import { OPEN_GATE, type ConnectionGate } from '../net/connection-gate.js';

/** Failed-login protection and connection admission for one running popwarden. */
export interface Protection {
  readonly guard: LoginGuard;
  readonly gate: ConnectionGate;
  close(): Promise<void>;
}

/** Builds the protection as configured. (Rate limiting is not implemented yet: all are admitted.) */
export async function createProtection(_config: Config, _log: Logger, _metrics: Metrics): Promise<Protection> {
  return { guard: ALLOW_ALL, gate: OPEN_GATE, close: () => Promise.resolve() };
}
