import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Config } from '../config/types.js';
import type { Logger } from '../observability/log.js';
import { startPopwarden, type ReloadableProxy } from '../proxy.js';
import { loadTlsMaterial } from '../net/tls-material.js';
import { TlsProvider } from '../net/tls-provider.js';
import { startObservability } from './observability.js';
import { createProtection } from '../auth/protection.js';
import { configDescriptorWarning } from '../net/descriptor-budget.js';

/** tls.watch_files: editors and ACME clients write a cert, key and chain in quick succession; reload once after they settle. */
export const WATCH_DEBOUNCE_MS = 1_000;

export interface RunOptions {
  /** Reads the config again on reload (the CLI re-reads the same file, flags and environment). */
  readonly loadConfig?: () => Config;
}

/**
 * Watches the directories of the given files (certificates are usually replaced by rename, which
 * a watch on the file itself would lose) and calls `onChange` once changes have settled.
 */
function watchFiles(files: readonly string[], onChange: () => void, log: Logger): () => void {
  const byDir = new Map<string, Set<string>>();
  for (const file of files) {
    const names = byDir.get(dirname(file)) ?? new Set<string>();
    names.add(basename(file));
    byDir.set(dirname(file), names);
  }
  let timer: NodeJS.Timeout | undefined;
  const watchers: FSWatcher[] = [];
  for (const [dir, names] of byDir) {
    try {
      const watcher = watch(dir, { persistent: false }, (_event, name) => {
        if (name !== null && !names.has(name.toString())) return;
        clearTimeout(timer);
        timer = setTimeout(onChange, WATCH_DEBOUNCE_MS);
      });
      watcher.on('error', (error) => log.warn({ err: error, dir }, 'tls.watch_files: watching stopped; SIGHUP still reloads'));
      watchers.push(watcher);
    } catch (error) {
      log.warn({ err: error, dir }, 'tls.watch_files: cannot watch this directory; SIGHUP still reloads');
    }
  }
  return () => {
    clearTimeout(timer);
    for (const watcher of watchers) watcher.close();
  };
}

/**
 * Builds every part popwarden runs with, in dependency order, and starts it: TLS material,
 * observability (metrics, health endpoints), failed-login protection (Redis or in-process), then
 * the listeners. Closing the result stops them in the reverse order. reload() re-reads the config
 * and certificates (see config/reload.ts for what applies without a restart).
 */
export async function runPopwarden(config: Config, log: Logger, options: RunOptions = {}): Promise<ReloadableProxy> {
  const tls = new TlsProvider(await loadTlsMaterial(config, log));
  const observability = await startObservability(config, log);
  const descriptors = configDescriptorWarning(config);
  if (descriptors !== undefined) log.warn(descriptors);
  const protection = await createProtection(config, log, observability.metrics);
  let proxy: ReloadableProxy;
  try {
    proxy = await startPopwarden(config, {
      log,
      tls,
      metrics: observability.metrics,
      guard: protection.guard,
      gate: protection.gate,
      ...(protection.shared === undefined ? {} : { shared: protection.shared }),
      ...(options.loadConfig === undefined ? {} : { loadConfig: options.loadConfig }),
    });
  } catch (error) {
    await protection.close();
    await observability.close();
    throw error;
  }
  observability.watch(proxy, tls.current);

  let stopWatching = (): void => undefined;
  const reload: ReloadableProxy['reload'] = async () => {
    const outcome = await proxy.reload();
    if (outcome.ok) {
      // The expiry gauge follows the certificates now served, the health probes the backends.
      observability.watch(proxy, tls.current);
      observability.backendsChanged(outcome.config.backends);
      if (config.tls.watchFiles) armWatch();
    }
    return outcome;
  };
  const armWatch = (): void => {
    stopWatching();
    stopWatching = watchFiles(tls.files, () => void reload(), log);
  };
  if (config.tls.watchFiles) {
    if (tls.files.length === 0) log.warn('tls.watch_files is on but no certificate files are configured (self-signed): nothing to watch');
    else armWatch();
  }

  return {
    listeners: proxy.listeners,
    tls,
    reload,
    async close(closeOptions) {
      stopWatching();
      await proxy.close(closeOptions);
      await protection.close();
      await observability.close();
    },
  };
}
