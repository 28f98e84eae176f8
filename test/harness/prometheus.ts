/**
 * A real Prometheus (Debian's `prometheus` package) for tests: its own temp config and data dir,
 * a free loopback port, a short scrape interval, and the HTTP API for queries. Stopped by PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

export interface PrometheusOptions {
  /** host:port targets of job "popwarden". */
  readonly targets: readonly string[];
  /** Absolute paths of rule files to load. */
  readonly ruleFiles?: readonly string[];
  /** Default "1s". */
  readonly scrapeInterval?: string;
}

/** One sample of an instant query result. */
export interface PromSample {
  readonly metric: Record<string, string>;
  readonly value: [number, string];
}

export type QueryResult =
  | { readonly ok: true; readonly resultType: string; readonly result: PromSample[] | [number, string] }
  | { readonly ok: false; readonly errorType: string; readonly error: string };

export interface RangeSeries {
  readonly metric: Record<string, string>;
  readonly values: [number, string][];
}

export interface TestPrometheus {
  readonly url: string;
  readonly pid: number;
  /** Instant query through /api/v1/query. */
  query(expr: string): Promise<QueryResult>;
  /** Range query through /api/v1/query_range (seconds, step in seconds). */
  queryRange(expr: string, start: number, end: number, step: number): Promise<RangeSeries[]>;
  /** Resolves when `expr` returns at least one sample that passes `accept`, or rejects after `timeoutMs`. */
  waitFor(expr: string, accept?: (s: PromSample) => boolean, timeoutMs?: number): Promise<PromSample[]>;
  /** Everything Prometheus wrote to stderr (its log). */
  log(): string;
  stop(): Promise<void>;
}

/** True when the `prometheus` binary exists (tests skip themselves without it). */
export async function prometheusAvailable(): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn('prometheus', ['--version'], { stdio: 'ignore' });
    child.once('error', () => resolve(false));
    child.once('exit', (code) => resolve(code === 0));
  });
}

export async function startPrometheus(options: PrometheusOptions): Promise<TestPrometheus> {
  const dir = mkdtempSync(join(tmpdir(), 'popwarden-prometheus-'));
  const interval = options.scrapeInterval ?? '1s';
  const config = [
    'global:',
    `  scrape_interval: ${interval}`,
    `  evaluation_interval: ${interval}`,
    `  scrape_timeout: ${interval}`,
    'rule_files:',
    ...(options.ruleFiles ?? []).map((f) => `  - ${JSON.stringify(f)}`),
    ...((options.ruleFiles ?? []).length === 0 ? ['  []'] : []),
    'scrape_configs:',
    '  - job_name: popwarden',
    '    static_configs:',
    `      - targets: [${options.targets.map((t) => JSON.stringify(t)).join(', ')}]`,
    '',
  ].join('\n');
  writeFileSync(join(dir, 'prometheus.yml'), config);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(
    'prometheus',
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const pid = child.pid;
  if (pid === undefined) throw new Error('prometheus did not start');

  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(pid, 'SIGTERM');
      const timer = setTimeout(() => child.exitCode === null && process.kill(pid, 'SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  const api = async (path: string, params: Record<string, string>): Promise<Record<string, unknown>> => {
    const res = await fetch(`${url}${path}?${new URLSearchParams(params).toString()}`, { signal: AbortSignal.timeout(10_000) });
    return (await res.json()) as Record<string, unknown>;
  };

  const query = async (expr: string): Promise<QueryResult> => {
    const body = await api('/api/v1/query', { query: expr });
    if (body['status'] !== 'success') return { ok: false, errorType: String(body['errorType']), error: String(body['error']) };
    const data = body['data'] as { resultType: string; result: PromSample[] };
    return { ok: true, resultType: data.resultType, result: data.result };
  };

  // Ready = the HTTP API answers; give it 20 s (first start creates the TSDB).
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`prometheus exited with ${child.exitCode}: ${stderr}`);
    const ready = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1_000) }).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus not ready after 20 s: ${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  return {
    url,
    pid,
    query,
    async queryRange(expr, start, end, step) {
      const body = await api('/api/v1/query_range', { query: expr, start: String(start), end: String(end), step: String(step) });
      if (body['status'] !== 'success') throw new Error(`query_range ${expr}: ${String(body['error'])}`);
      return (body['data'] as { result: RangeSeries[] }).result;
    },
    async waitFor(expr, accept = () => true, timeoutMs = 20_000) {
      const until = Date.now() + timeoutMs;
      let last: QueryResult | undefined;
      for (;;) {
        last = await query(expr);
        if (last.ok && Array.isArray(last.result)) {
          const samples = (last.result as PromSample[]).filter(accept);
          if (samples.length > 0) return samples;
        }
        if (Date.now() > until) throw new Error(`waitFor ${expr}: nothing after ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    },
    log: () => stderr,
    stop,
  };
}
