import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BackendConfig, Config } from '../config/types.js';
import type { Logger } from '../observability/log.js';
import { NO_METRICS, type Metrics } from '../observability/metrics.js';
import type { RunningProxy } from '../proxy.js';
import type { TlsMaterial } from '../net/tls-material.js';
import { CERT_FILE_NAME } from '../certs/self-signed.js';
import type { PrometheusMetrics } from '../observability/prometheus.js';
import { startMetricsServer, type MetricsServer, type ReadinessCheck } from '../observability/metrics-server.js';
import { BackendProbers } from '../backend/probers.js';
import { packageVersion } from '../version.js';

/** Metrics and health endpoints for one running popwarden. */
export interface Observability {
  readonly metrics: Metrics;
  /** Called once the listeners are bound (readiness depends on them). `tls` feeds the certificate-expiry gauge. */
  watch(proxy: RunningProxy, tls?: TlsMaterial): void;
  /** After a reload: the health probes follow the backends now configured (added, removed, changed). */
  backendsChanged(backends: readonly BackendConfig[]): void;
  close(): Promise<void>;
  /** Where the admin endpoints listen; undefined when metrics are off. */
  readonly address: { readonly host: string; readonly port: number } | undefined;
}

/**
 * The certificates served, when the caller has no TlsMaterial at hand: read back from the file
 * loadTlsMaterial used (the operator's, or the first-run self-signed one in stateDir).
 */
function certificatesFromFiles(config: Config, log: Logger): { name: string; notAfter: Date }[] {
  const file = config.tls.certFile ?? join(config.stateDir, CERT_FILE_NAME);
  try {
    const cert = new X509Certificate(readFileSync(file));
    return [{ name: /^CN=(.*)$/m.exec(cert.subject)?.[1] ?? cert.subject, notAfter: new Date(cert.validTo) }];
  } catch (error) {
    log.warn({ certFile: file, reason: (error as Error).message }, 'cannot read the certificate for the expiry metric');
    return [];
  }
}

export interface ObservabilityOptions {
  /** Overrides the version in popwarden_build_info (default: package.json). */
  readonly version?: string;
  /** prom-client's process_* and nodejs_* metrics (default true). */
  readonly defaultMetrics?: boolean;
}

/**
 * Starts observability as configured: the Prometheus metrics, the admin HTTP server
 * (/metrics, /healthz, /readyz) and the periodic backend probe. With metrics_listen off, events
 * are dropped and nothing listens. Rejects when the admin address cannot be bound.
 */
export async function startObservability(config: Config, log: Logger, options: ObservabilityOptions = {}): Promise<Observability> {
  const listen = config.metrics.listen;
  if (listen === undefined) {
    log.info('metrics and health endpoints are off (metrics_listen: off)');
    return { metrics: NO_METRICS, watch: () => undefined, backendsChanged: () => undefined, close: () => Promise.resolve(), address: undefined };
  }
  // Imported here, not at the top: prom-client costs about 10 MiB of RSS that a popwarden with
  // metrics off never needs (issue 10.4).
  const { createPrometheusMetrics } = await import('../observability/prometheus.js');
  const metrics: PrometheusMetrics = createPrometheusMetrics({
    version: options.version ?? packageVersion(),
    backends: config.backends.map((b) => b.name),
    listeners: config.listeners.map((l) => ({ name: l.name, tls: l.kind === 'tls' ? 'implicit' : 'starttls' })),
    ...(options.defaultMetrics === undefined ? {} : { defaultMetrics: options.defaultMetrics }),
  });

  const probers = new BackendProbers(config.timeouts.backendConnectMs, metrics, log);

  let proxy: RunningProxy | undefined;
  let closed = false;
  let server: MetricsServer;
  try {
    server = await startMetricsServer(
      listen,
      {
        metrics: async () => ({ contentType: metrics.contentType, body: await metrics.render() }),
        async readiness() {
          const listeners: ReadinessCheck =
            proxy !== undefined && !closed
              ? { ok: true, detail: `${proxy.listeners.length} bound` }
              : { ok: false, detail: closed ? 'stopping' : 'not bound yet' };
          const store = metrics.storeUp();
          return {
            listeners,
            ...(await probers.readiness()),
            rate_limit_store:
              store === undefined ? { ok: true, detail: 'not configured' } : { ok: store, detail: store ? 'up' : 'down' },
          };
        },
      },
      log,
    );
  } catch (error) {
    const code = (error as { code?: string }).code;
    const why = code === 'EADDRINUSE' ? 'address already in use' : code === 'EACCES' ? 'permission denied' : (error as Error).message;
    throw Object.assign(new Error(`metrics_listen ${listen.host}:${listen.port}: ${why}; change metrics_listen, or set it to off`), {
      cause: error,
      code,
    });
  }

  // Only once the server is up: a failed start leaves no probe running.
  probers.follow(config.backends);
  return {
    metrics,
    address: { host: server.address.address, port: server.address.port },
    backendsChanged(backends) {
      if (closed) return;
      metrics.setBackends(backends.map((b) => b.name));
      probers.follow(backends);
    },
    watch(running, tls) {
      proxy = running;
      const certs = tls?.certificates ?? certificatesFromFiles(config, log);
      metrics.setCertificates(running.listeners.flatMap((l) => certs.map((c) => ({ listener: l.config.name, ...c }))));
    },
    async close() {
      closed = true;
      await probers.stop();
      await server.close();
    },
  };
}
