import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { HostPort } from '../config/types.js';
import type { Logger } from './log.js';

/** One part of readiness: whether it is fine, and a short word or phrase on what was seen. */
export interface ReadinessCheck {
  readonly ok: boolean;
  readonly detail: string;
}

/** What the admin endpoints serve; wiring/observability.ts fills it from the metrics, the proxy and the prober. */
export interface AdminHandlers {
  /** The Prometheus exposition. */
  metrics(): Promise<{ readonly contentType: string; readonly body: string }>;
  /** Every readiness check by name; not ready when any is not ok. */
  readiness(): Promise<Record<string, ReadinessCheck>>;
}

/** The running admin HTTP server. */
export interface MetricsServer {
  readonly address: AddressInfo;
  close(): Promise<void>;
}

const JSON_TYPE = 'application/json; charset=utf-8';

function send(res: ServerResponse, status: number, contentType: string, body: string, head: boolean): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(head ? undefined : body);
}

async function handle(req: IncomingMessage, res: ServerResponse, handlers: AdminHandlers): Promise<void> {
  const head = req.method === 'HEAD';
  if (req.method !== 'GET' && !head) {
    res.setHeader('allow', 'GET, HEAD');
    send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', false);
    return;
  }
  // Only the path counts; a scraper may add query parameters (e.g. Prometheus' params).
  const path = (req.url ?? '/').split('?', 1)[0];
  switch (path) {
    case '/metrics': {
      const { contentType, body } = await handlers.metrics();
      send(res, 200, contentType, body, head);
      return;
    }
    case '/healthz':
      send(res, 200, JSON_TYPE, '{"status":"alive"}\n', head);
      return;
    case '/readyz': {
      const checks = await handlers.readiness();
      const ready = Object.values(checks).every((c) => c.ok);
      send(res, ready ? 200 : 503, JSON_TYPE, `${JSON.stringify({ status: ready ? 'ready' : 'not ready', checks })}\n`, head);
      return;
    }
    default:
      send(res, 404, 'text/plain; charset=utf-8', 'not found: try /metrics, /healthz or /readyz\n', head);
  }
}

/**
 * Serves /metrics, /healthz (the process answers) and /readyz (every readiness check passes;
 * 503 with a JSON body naming the failing part otherwise) on the admin address, with node:http.
 * Rejects with the bind error, so a taken port fails startup like a taken POP3 port does.
 */
export async function startMetricsServer(listen: HostPort, handlers: AdminHandlers, log: Logger): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    handle(req, res, handlers).catch((error: unknown) => {
      log.error({ err: error, path: req.url }, 'admin endpoint failed');
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', 'internal error\n', false);
      else res.destroy();
    });
  });
  // Scrapes are short; a client that holds a connection open must not keep shutdown waiting.
  server.keepAliveTimeout = 5_000;
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  log.info({ address: `${address.address}:${address.port}` }, 'metrics and health endpoints listening');
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
