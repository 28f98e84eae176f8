import type { Config } from './config/types.js';
import type { Logger } from './observability/log.js';
import { startPopwarden, type RunningProxy } from './app.js';
import { loadTlsMaterial } from './net/tls-context.js';
import { startObservability } from './observability/setup.js';
import { createProtection } from './auth/protection.js';

/**
 * Builds every part popwarden runs with, in dependency order, and starts it: TLS material,
 * observability (metrics, health endpoints), failed-login protection (Redis or in-process), then
 * the listeners. Closing the result stops them in the reverse order.
 */
export async function runPopwarden(config: Config, log: Logger): Promise<RunningProxy> {
  const tls = await loadTlsMaterial(config, log);
  const observability = await startObservability(config, log);
  const protection = await createProtection(config, log, observability.metrics);
  let proxy: RunningProxy;
  try {
    proxy = await startPopwarden(config, {
      log,
      tls,
      metrics: observability.metrics,
      guard: protection.guard,
      gate: protection.gate,
    });
  } catch (error) {
    await protection.close();
    await observability.close();
    throw error;
  }
  observability.watch(proxy, tls);
  return {
    listeners: proxy.listeners,
    async close(options) {
      await proxy.close(options);
      await protection.close();
      await observability.close();
    },
  };
}
