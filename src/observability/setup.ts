import type { Config } from '../config/types.js';
import type { Logger } from './log.js';
import { NO_METRICS, type Metrics } from './metrics.js';
import type { RunningProxy } from '../app.js';

/** Metrics and health endpoints for one running popwarden. */
export interface Observability {
  readonly metrics: Metrics;
  /** Called once the listeners are bound (readiness depends on them). */
  watch(proxy: RunningProxy): void;
  close(): Promise<void>;
}

/** Starts observability as configured. (Metrics are not implemented yet: events are dropped.) */
export async function startObservability(_config: Config, _log: Logger): Promise<Observability> {
  return { metrics: NO_METRICS, watch: () => undefined, close: () => Promise.resolve() };
}
