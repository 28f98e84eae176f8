/**
 * One health prober per configured backend (issue 13.5), following the configured set across
 * reloads, and the /readyz verdict over all of them: ready while at least one backend that takes
 * new sessions (not drained) answered its last probe. One dead mail host among many must not take
 * the whole gateway out of its load balancer; every backend down (or drained) must.
 */
import type { BackendConfig } from '../config/types.js';
import type { Logger } from '../observability/log.js';
import type { Metrics } from '../observability/metrics.js';
import { BackendProber } from './probe.js';

/** One part of readiness, as the admin server shows it. */
export interface BackendReadiness {
  readonly ok: boolean;
  readonly detail: string;
}

interface Probed {
  readonly config: BackendConfig;
  readonly prober: BackendProber;
}

export class BackendProbers {
  readonly #probed = new Map<string, Probed>();
  #stopped = false;

  constructor(
    private readonly timeoutMs: number,
    private readonly metrics: Pick<Metrics, 'backendProbe'>,
    private readonly log: Logger,
  ) {}

  /** Starts probing new or changed backends and stops probing the ones gone or changed. */
  follow(backends: readonly BackendConfig[]): void {
    if (this.#stopped) return;
    const wanted = new Map(backends.map((backend) => [backend.name, backend]));
    for (const [name, probed] of this.#probed) {
      const next = wanted.get(name);
      if (next !== undefined && JSON.stringify(next) === JSON.stringify(probed.config)) continue;
      void probed.prober.stop();
      this.#probed.delete(name);
    }
    for (const backend of backends) {
      if (this.#probed.has(backend.name)) continue;
      const prober = new BackendProber(backend, this.timeoutMs, this.metrics, this.log);
      this.#probed.set(backend.name, { config: backend, prober });
      prober.start(backend.probeIntervalMs);
    }
  }

  /** One backend's state: its last periodic probe while fresh (two intervals), else a probe now. */
  async #check(probed: Probed): Promise<BackendReadiness> {
    const interval = probed.config.probeIntervalMs;
    const last = probed.prober.last;
    const fresh = interval > 0 && last !== undefined && Date.now() - last.at <= 2 * interval;
    const result = fresh ? last.result : await probed.prober.probeNow();
    const drained = probed.config.drain ? ' (drained)' : '';
    if (result.up) return { ok: true, detail: `greeting received${drained}` };
    const why = result.fix === undefined ? result.reason : `${result.reason}: ${result.fix}`;
    return { ok: false, detail: `${fresh ? 'last probe failed: ' : ''}${why}${drained}` };
  }

  /**
   * `backend`: ok while at least one backend that takes new sessions is up, with every backend's
   * own state under `backends`.
   */
  async readiness(): Promise<{ backend: BackendReadiness & { readonly backends: Record<string, BackendReadiness> } }> {
    const entries = [...this.#probed.values()];
    const states = await Promise.all(entries.map((probed) => this.#check(probed)));
    const backends = Object.fromEntries(entries.map((probed, index) => [probed.config.name, states[index]!]));
    const serving = entries.filter((probed, index) => states[index]!.ok && !probed.config.drain).length;
    const open = entries.filter((probed) => !probed.config.drain).length;
    if (entries.length === 1) {
      const [only] = states;
      const ok = serving === 1;
      return { backend: { ok, detail: only === undefined ? 'no backend' : entries[0]!.config.drain ? 'drained' : only.detail, backends } };
    }
    return { backend: { ok: serving > 0, detail: `${serving} of ${open} backends taking sessions are up`, backends } };
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all([...this.#probed.values()].map((probed) => probed.prober.stop()));
  }
}
