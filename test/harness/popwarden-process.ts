/**
 * popwarden as a real process (`node --unhandled-rejections=strict src/cli.ts --config FILE`),
 * for the suites that must prove the process itself survives: the fault suite, kill -9. Its JSON
 * log lines (stdout) are captured and awaitable like the in-process harness's; /metrics is read
 * over HTTP; anything the process prints on stderr, an uncaught exception or an unhandled
 * rejection, or an exit nobody asked for, is a crash that crashReport() names.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { stringify } from 'yaml';
import { LogCapture, type LogPredicate, type WaitForLogOptions } from './log-capture.js';
import { testCertificate } from './popwarden.js';

const ROOT = resolve(import.meta.dirname, '../..');
const CLI = join(ROOT, 'src', 'cli.ts');

/** Log messages that only a defect writes (session.ts's catch-all, Node's own reports). */
const DEFECT_MESSAGE = /unexpected error|uncaught|unhandled/i;

export interface PopwardenProcess {
  readonly pid: number;
  readonly host: string;
  readonly tlsPort: number;
  readonly stlsPort: number;
  readonly metricsPort: number;
  /** The CA file clients trust (the test certificate). */
  readonly caFile: string;
  /** The state directory: give it to a restart to keep the HMAC key. */
  readonly stateDir: string;
  /** Writes `settings` over the test defaults to the config file again (read at the next SIGHUP). */
  rewriteConfig(settings: Record<string, unknown>): void;
  /** SIGHUP: reload the config file. */
  hangUp(): void;
  /** Parsed log lines so far. */
  logs(): Record<string, unknown>[];
  waitForLog(predicate: LogPredicate, options?: WaitForLogOptions): Promise<Record<string, unknown>>;
  /** The value of one sample of /metrics (0 when the series does not exist yet). */
  metric(name: string, labels?: Readonly<Record<string, string>>): Promise<number>;
  /** The sum of every sample of one metric family (a counter over all its labels). */
  metricTotal(name: string): Promise<number>;
  /** The /metrics text now (read it with sampleValue and sampleTotal). */
  scrape(): Promise<string>;
  /** Undefined while the process is healthy; else what went wrong (stderr, a defect line, an exit). */
  crashReport(): string | undefined;
  /** Resolves when the process has exited, whoever ended it. */
  waitForExit(): Promise<void>;
  /** kill -9, awaited. */
  kill9(): Promise<void>;
  /** SIGTERM, awaited. */
  stop(): Promise<void>;
}

/**
 * Starts popwarden with `settings` (YAML keys, as in contrib/popwarden.example.yaml) over the test
 * defaults: loopback listeners on free ports, the test certificate, metrics on a free port, no
 * backend probe, no failure delay, debug logs.
 */
export async function spawnPopwarden(
  settings: Record<string, unknown>,
  options: { stateDir?: string; /** More node flags (the harness's own test plants a defect with one). */ nodeArgs?: readonly string[] } = {},
): Promise<PopwardenProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'popwarden-process-'));
  const stateDir = options.stateDir ?? join(dir, 'state');
  const cert = testCertificate();
  const config = {
    listen_tls: ['127.0.0.1:0'],
    listen_stls: ['127.0.0.1:0'],
    metrics_listen: '127.0.0.1:0',
    backend_probe_interval: '0s',
    auth_failure_delay: '0s',
    log_level: 'debug',
    state_dir: stateDir,
    cert: cert.certFile,
    key: cert.keyFile,
    ...settings,
  };
  const configFile = join(dir, 'popwarden.yaml');
  writeFileSync(configFile, stringify(config));
  const defaults = Object.fromEntries(Object.entries(config).filter(([key]) => !(key in settings)));
  const child: ChildProcess = spawn(
    process.execPath,
    ['--unhandled-rejections=strict', ...(options.nodeArgs ?? []), '--import', 'tsx', CLI, '--config', configFile],
    { cwd: ROOT, env: { PATH: process.env['PATH'] ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const logs = new LogCapture();
  let stderr = '';
  let expectedExit = false;
  let exit: string | undefined;
  const exited = new Promise<void>((done) =>
    child.once('exit', (code, signal) => {
      exit = `exited with ${signal ?? code}`;
      done();
    }),
  );
  createInterface({ input: child.stdout! }).on('line', (line) => {
    // Only JSON lines are log lines; anything else on stdout is a defect report.
    if (line.startsWith('{')) logs.stream.write(`${line}\n`);
    else stderr += `${line}\n`;
  });
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));

  const listening = (kind: string): Promise<number> =>
    logs
      .waitFor((e) => e['msg'] === 'listening' && e['kind'] === kind, { timeoutMs: 30_000 })
      .then((e) => Number(String(e['address']).split(':').pop()));
  let ports: [number, number, number];
  try {
    ports = await Promise.race([
      Promise.all([
        listening('tls'),
        listening('stls'),
        logs
          .waitFor((e) => e['msg'] === 'metrics and health endpoints listening', { timeoutMs: 30_000 })
          .then((e) => Number(String(e['address']).split(':').pop())),
      ]),
      exited.then(() => {
        throw new Error(`popwarden ${exit} before listening:\n${stderr}\n${logs.text()}`);
      }),
    ]);
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  const [tlsPort, stlsPort, metricsPort] = ports;

  const scrape = async (): Promise<string> => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const signal = async (name: NodeJS.Signals): Promise<void> => {
    expectedExit = true;
    if (child.exitCode === null && child.signalCode === null) child.kill(name);
    await exited;
  };
  return {
    pid: child.pid ?? -1,
    host: '127.0.0.1',
    tlsPort,
    stlsPort,
    metricsPort,
    caFile: cert.caFile,
    stateDir,
    rewriteConfig: (next) => writeFileSync(configFile, stringify({ ...defaults, ...next })),
    hangUp: () => void child.kill('SIGHUP'),
    logs: () => logs.entries(),
    waitForLog: (predicate, waitOptions) => logs.waitFor(predicate, waitOptions),
    scrape,
    metric: async (name, labels = {}) => sampleValue(await scrape(), name, labels),
    metricTotal: async (name) => sampleTotal(await scrape(), name),
    crashReport() {
      const problems: string[] = [];
      if (stderr.trim() !== '') problems.push(`stderr:\n${stderr}`);
      const defects = logs.entries().filter((e) => DEFECT_MESSAGE.test(String(e['msg'])));
      if (defects.length > 0) problems.push(`defect log lines:\n${defects.map((e) => JSON.stringify(e)).join('\n')}`);
      if (exit !== undefined && !expectedExit) problems.push(`the process ${exit}`);
      return problems.length === 0 ? undefined : problems.join('\n');
    },
    waitForExit: () => exited,
    kill9: () => signal('SIGKILL'),
    stop: () => signal('SIGTERM'),
  };
}

/** One sample's value from a Prometheus text exposition (0 if absent). */
export function sampleValue(text: string, name: string, labels: Readonly<Record<string, string>> = {}): number {
  const wanted = Object.entries(labels);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const open = line.indexOf('{');
    const close = line.lastIndexOf('}');
    const labelText = open === -1 || open > name.length ? '' : line.slice(open + 1, close);
    const have = new Map([...labelText.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1]!, m[2]!]));
    if (wanted.every(([k, v]) => have.get(k) === v)) return Number(line.slice((close === -1 ? name.length : close + 1)).trim());
  }
  return 0;
}

/** The sum of every sample of `name` (all label sets) in a Prometheus text exposition. */
export function sampleTotal(text: string, name: string): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

/**
 * The end of a suite: stops the popwarden processes, then the peers (in the order given), then
 * fails if a process had crashed or reported an uncaught error on the way.
 */
export async function stopAll(processes: readonly (PopwardenProcess | undefined)[], ...peers: ({ stop(): Promise<void> } | undefined)[]): Promise<void> {
  const crashes = processes.map((pw) => pw?.crashReport()).filter((report) => report !== undefined);
  for (const pw of processes) await pw?.stop();
  for (const peer of peers) await peer?.stop();
  assert.deepEqual(crashes, []);
}
