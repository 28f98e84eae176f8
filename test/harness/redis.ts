/**
 * Real redis-server instances for tests, on free loopback ports in temp dirs, never the system
 * service: start, stop (SHUTDOWN NOSAVE), kill -9, hang (SIGSTOP) and resume (SIGCONT), always
 * by the pid we started. Also a 3-node Redis Cluster built with `redis-cli --cluster create`.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { Changes } from './changes.js';
import { EventEmitter, once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import assert from 'node:assert/strict';
import { freePort, waitForPort } from './ports.js';
import type { FakeBackend } from './fake-backend.js';
import { startTestProxy, testConfig, type TestProxy } from './popwarden.js';
import { RawClient } from './raw-client.js';
import { createProtection, type Protection } from '../../src/auth/protection.js';
import type { BackendConfig, LimitsConfig, ListenerConfig, RateLimitConfig, RedisTarget, TimeoutsConfig } from '../../src/config/types.js';
import { createLogger } from '../../src/observability/log.js';
import { NO_METRICS, type Metrics } from '../../src/observability/metrics.js';
import type { ConnectionGate } from '../../src/net/connection-gate.js';

const run = promisify(execFile);

export interface RedisServer {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  /** The pid of the redis-server we started (changes after restart()). */
  readonly pid: number;
  /** `redis-cli -p PORT ARGS...`, stdout trimmed. */
  cli(...args: string[]): Promise<string>;
  /** kill -9: the abrupt death. */
  kill(): Promise<void>;
  /** SIGSTOP: the process is alive but answers nothing (a hung Redis). */
  hang(): void;
  /** SIGCONT after hang(). */
  resume(): void;
  /** Starts again on the same port (empty: no persistence). */
  restart(): Promise<void>;
  /** Stops for good and removes the temp dir. */
  stop(): Promise<void>;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function spawnRedis(port: number, dir: string, extra: readonly string[] = []): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--save', '', '--appendonly', 'no', '--bind', '127.0.0.1', '--dir', dir, ...extra],
    { stdio: 'ignore' },
  );
  const failed = new Promise<never>((_, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`redis-server on ${port} exited with ${code}`)));
  });
  await Promise.race([waitForPort('127.0.0.1', port, 10_000), failed]);
  failed.catch(() => undefined);
  return child;
}

/** Starts `redis-server --port P --save '' --appendonly no --bind 127.0.0.1` in a temp dir. */
export async function startRedis(extra: readonly string[] = []): Promise<RedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'popwarden-redis-'));
  let child = await spawnRedis(port, dir, extra);
  const cli = async (...args: string[]): Promise<string> =>
    (await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 10_000 })).stdout.trim();
  const kill = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
    }
    await exited(child);
  };
  return {
    host: '127.0.0.1',
    port,
    url: `redis://127.0.0.1:${port}`,
    get pid() {
      return child.pid ?? -1;
    },
    cli,
    kill,
    hang: () => void child.kill('SIGSTOP'),
    resume: () => void child.kill('SIGCONT'),
    async restart() {
      await kill();
      child = await spawnRedis(port, dir, extra);
    },
    async stop() {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The commands a Redis receives, as `redis-cli MONITOR` prints them (each call of a Lua script marked). */
export interface RedisMonitor {
  /**
   * The commands received since the last take() (or since start), once Redis has answered
   * everything sent before this call: a marker command is sent and awaited in the output.
   * `fromClients` drops the commands Lua scripts ran, leaving what clients sent.
   */
  take(options?: { readonly fromClients?: boolean }): Promise<MonitoredCommand[]>;
  stop(): void;
}

export interface MonitoredCommand {
  /** Lower case, as MONITOR prints it: `evalsha`, `hgetall`. */
  readonly name: string;
  readonly args: readonly string[];
  /** Run by a Lua script, not sent by a client. */
  readonly lua: boolean;
}

/** `redis-cli MONITOR` on `redis`, started and ready to record. */
export async function monitorRedis(redis: Pick<RedisServer, 'port' | 'cli'>): Promise<RedisMonitor> {
  const child = spawn('redis-cli', ['-h', '127.0.0.1', '-p', String(redis.port), 'MONITOR'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const changes = new Changes();
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    output += chunk;
    changes.notify();
  });
  await changes.until(() => (output.startsWith('OK\n') ? true : undefined), 10_000, () => 'redis-cli MONITOR did not start');
  output = output.slice(3);
  let markers = 0;
  return {
    async take({ fromClients = false } = {}) {
      const marker = `popwarden-test-marker-${++markers}`;
      await redis.cli('echo', marker);
      await changes.until(() => (output.includes(`"echo" "${marker}"`) ? true : undefined), 10_000, () => `MONITOR did not show ${marker}`);
      const lines = output.split('\n');
      const end = lines.findIndex((line) => line.includes(`"echo" "${marker}"`));
      output = lines.slice(end + 1).join('\n');
      return lines
        .slice(0, end)
        .map(parseMonitorLine)
        .filter((command): command is MonitoredCommand => command !== undefined && !(fromClients && command.lua));
    },
    stop: () => void child.kill(),
  };
}

/** `1701234567.123456 [0 127.0.0.1:40000] "get" "key"` (or `[0 lua]`) as a command. */
function parseMonitorLine(line: string): MonitoredCommand | undefined {
  const match = /^\d+\.\d+ \[\d+ ([^\]]+)\] (.*)$/.exec(line);
  if (match === null) return undefined;
  const words = [...(match[2] ?? '').matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1] ?? '');
  return { name: (words[0] ?? '').toLowerCase(), args: words.slice(1), lua: match[1] === 'lua' };
}

export interface RedisCluster {
  readonly nodes: readonly RedisServer[];
  stop(): Promise<void>;
}

/** Three masters, no replicas: `redis-server --cluster-enabled yes` ×3 + `redis-cli --cluster create`. */
export async function startRedisCluster(): Promise<RedisCluster> {
  const nodes: RedisServer[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      nodes.push(await startRedis(['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000']));
    }
    await run(
      'redis-cli',
      ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'],
      { timeout: 30_000 },
    );
    // Wait until every node agrees that all slots are served.
    const deadline = Date.now() + 20_000;
    for (const node of nodes) {
      while (!(await node.cli('cluster', 'info')).includes('cluster_state:ok')) {
        if (Date.now() > deadline) throw new Error('redis cluster did not become ok');
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  } catch (error) {
    await Promise.all(nodes.map((n) => n.stop()));
    throw error;
  }
  return {
    nodes,
    stop: async () => {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// popwarden with the protection createProtection builds (over such a Redis, or in memory)

export interface Protected {
  readonly proxy: TestProxy;
  readonly protection: Protection;
  readonly logs: string[];
  /** Resolves when the gate next gives back a connection's place (its socket has closed). */
  nextRelease(): Promise<void>;
  /** Resolves with the first line of `logs`, written or still to come, that contains `text`. */
  whenLogged(text: string, timeoutMs?: number): Promise<string>;
  /** Resolves once the rate-limit store is reported `up` (or down), at once if it already is. */
  whenStore(up: boolean, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** `gate`, telling `releases` every time a connection gives its place back. */
function observedGate(gate: ConnectionGate, releases: EventEmitter): ConnectionGate {
  return {
    admit: (ip, makeRoom, returning) => {
      const admission = gate.admit(ip, makeRoom, returning);
      if (admission.kind === 'refused') return admission;
      return {
        kind: 'admitted',
        release: () => {
          admission.release();
          releases.emit('release');
        },
      };
    },
    protocolError: (ip) => gate.protocolError(ip),
  };
}

/** popwarden in front of `backend`, with the protection createProtection builds from this config. */
export async function startProtected(
  backend: Pick<FakeBackend, 'host' | 'port'>,
  options: {
    redis?: RedisTarget;
    rateLimit?: Partial<RateLimitConfig>;
    limits?: Partial<LimitsConfig>;
    timeouts?: Partial<TimeoutsConfig>;
    commandTimeoutMs?: number;
    authFailureDelayMs?: number;
    metrics?: Metrics;
    listeners?: readonly ListenerConfig[];
    /** Backend settings beyond the address (PROXY protocol, XCLIENT). */
    backendOptions?: Partial<BackendConfig>;
    /** The clock for the ages of connections a full bound may evict (ProxyDependencies.now). */
    now?: () => number;
    /** ProxyDependencies.refusalHoldMs. */
    refusalHoldMs?: number;
  } = {},
): Promise<Protected> {
  const backendConfig = { ...options.backendOptions, host: backend.host, port: backend.port };
  const base = testConfig({ backend: backendConfig, ...(options.listeners === undefined ? {} : { listeners: options.listeners }) });
  const config = {
    ...base,
    // Tests log in faster than any person: the connection rate bounds are raised or off unless tested.
    limits: { ...base.limits, maxNewConnectionsPerIp: 1_000, maxNewConnectionsPerIpPerMinute: 0, ...options.limits },
    redis: { ...base.redis, target: options.redis ?? base.redis.target, commandTimeoutMs: options.commandTimeoutMs ?? 300, connectTimeoutMs: 1_000 },
    rateLimit: { ...base.rateLimit, ...options.rateLimit },
  };
  const logs: string[] = [];
  const written = new Changes();
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logs.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''));
      written.notify();
      callback();
    },
  });
  const releases = new EventEmitter();
  // The store's up/down reports are told to the test too, so it can await them.
  const storeEvents = new EventEmitter();
  const metrics = options.metrics ?? NO_METRICS;
  const observedMetrics: Metrics = {
    ...metrics,
    rateLimitStoreUp: (up) => {
      metrics.rateLimitStoreUp(up);
      storeEvents.emit('up', up);
    },
  };
  const protection = await createProtection(config, createLogger('debug', sink), observedMetrics);
  const proxy = await startTestProxy({
    backend: backendConfig,
    // The same limits as the gate's: the handshake bounds are the proxy's own.
    limits: config.limits,
    ...(options.listeners === undefined ? {} : { listeners: options.listeners }),
    guard: protection.guard,
    gate: observedGate(protection.gate, releases),
    ...(protection.shared === undefined ? {} : { shared: protection.shared }),
    ...(options.authFailureDelayMs === undefined ? {} : { authFailureDelayMs: options.authFailureDelayMs }),
    ...(options.timeouts === undefined ? {} : { timeouts: options.timeouts }),
    // The same limits for the listeners (handshake bounds, invalid commands) as for the gate.
    ...(options.limits === undefined ? {} : { limits: options.limits }),
    ...(options.metrics === undefined ? {} : { metrics: options.metrics }),
    ...(options.now === undefined ? {} : { now: options.now }),
    ...(options.refusalHoldMs === undefined ? {} : { refusalHoldMs: options.refusalHoldMs }),
  });
  return {
    proxy,
    protection,
    logs,
    nextRelease: () => once(releases, 'release').then(() => undefined),
    whenLogged: (text, timeoutMs = 10_000) =>
      written.until(() => logs.find((line) => line.includes(text)), timeoutMs, () => `no log line with ${JSON.stringify(text)} within ${timeoutMs} ms`),
    whenStore: (up, timeoutMs = 10_000) =>
      new Promise<void>((resolve, reject) => {
        if (protection.storeUp() === up) return resolve();
        const timer = setTimeout(() => {
          storeEvents.off('up', onReport);
          reject(new Error(`the rate-limit store was not reported ${up ? 'up' : 'down'} within ${timeoutMs} ms`));
        }, timeoutMs);
        const onReport = (reported: boolean): void => {
          if (reported !== up) return;
          clearTimeout(timer);
          storeEvents.off('up', onReport);
          resolve();
        };
        storeEvents.on('up', onReport);
      }),
    stop: async () => {
      await proxy.stop();
      await protection.close();
    },
  };
}

/** USER/PASS over STLS from `source`; returns popwarden's reply to PASS. */
export async function login(proxy: TestProxy, source: string, user: string, password: string, timeoutMs = 5_000): Promise<string> {
  const client = await RawClient.plain(proxy.host, proxy.stlsPort, source);
  try {
    await client.readLine();
    assert.equal(await client.command('STLS'), '+OK Begin TLS negotiation');
    await client.upgrade(proxy.caFile);
    await client.command(`USER ${user}`);
    return await client.command(`PASS ${password}`, timeoutMs);
  } finally {
    client.destroy();
  }
}

/** Backend logins so far: connections on which the fake backend saw a PASS. */
export const backendLogins = (backend: FakeBackend): number =>
  backend.connections().filter((c) => c.lines().some((l) => l.startsWith('PASS '))).length;

