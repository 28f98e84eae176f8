/**
 * The ioredis client for the rate-limit store, configured so that a dead or hung Redis never
 * makes a login wait (STYLE lesson 9, SECURITY-TESTS F-02): no offline queue (a command while
 * disconnected fails at once instead of queueing and replaying late, double counting), one retry
 * per request, a command timeout, and reconnection in the background with a short capped backoff.
 */
import { readFileSync } from 'node:fs';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { RedisConfig } from '../../config/types.js';
import { formatHostPort } from '../../config/values.js';
import { redactRedisUrl } from '../../config/load.js';

export type RedisClient = Redis | Cluster;

/** Reconnect backoff: 100 ms, 200 ms, ... capped at 2 s, forever (Redis coming back is picked up without a restart). */
const retryStrategy = (attempt: number): number => Math.min(attempt * 100, 2_000);

function readPassword(file: string | undefined): string | undefined {
  return file === undefined ? undefined : readFileSync(file, 'utf8').trim();
}

/** Options every connection gets, whatever the topology. */
function commonOptions(config: RedisConfig): RedisOptions {
  return {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: config.commandTimeoutMs,
    connectTimeout: config.connectTimeoutMs,
    // Commands issued in one tick go out in one write (per node): check() is one round trip.
    enableAutoPipelining: true,
    retryStrategy,
  };
}

/** A client for the configured target; undefined when Redis is not configured. */
export function createRedisClient(config: RedisConfig): RedisClient | undefined {
  const target = config.target;
  const common = commonOptions(config);
  const auth = {
    ...(config.username === undefined ? {} : { username: config.username }),
    ...(config.passwordFile === undefined ? {} : { password: readPassword(config.passwordFile) }),
  };
  switch (target.kind) {
    case 'none':
      return undefined;
    case 'url':
      // The URL carries its own credentials and TLS (rediss://); a password_file fills in a missing password.
      return new Redis(target.url, { ...auth, ...common });
    case 'sentinel':
      return new Redis({
        ...common,
        ...auth,
        sentinels: target.sentinels.map(({ host, port }) => ({ host, port })),
        name: target.name,
        ...(config.tls ? { tls: {}, enableTLSForSentinelMode: true } : {}),
        sentinelRetryStrategy: retryStrategy,
      });
    case 'cluster': {
      const options: ClusterOptions = {
        enableOfflineQueue: false,
        enableAutoPipelining: true,
        clusterRetryStrategy: retryStrategy,
        slotsRefreshTimeout: config.connectTimeoutMs,
        redisOptions: { ...common, ...auth, ...(config.tls ? { tls: {} } : {}) },
      };
      return new Cluster(
        target.nodes.map(({ host, port }) => ({ host, port })),
        options,
      );
    }
  }
}

/** The target as it may be logged: never a password. */
export function describeRedisTarget(config: RedisConfig): string {
  const target = config.target;
  switch (target.kind) {
    case 'none':
      return 'none';
    case 'url':
      return redactRedisUrl(target.url);
    case 'sentinel':
      return `sentinel ${target.name}@${target.sentinels.map(formatHostPort).join(',')}`;
    case 'cluster':
      return `cluster ${target.nodes.map(formatHostPort).join(',')}`;
  }
}

/** Resolves true once the client is ready, false if it is not within `timeoutMs`. */
export function waitUntilReady(client: RedisClient, timeoutMs: number): Promise<boolean> {
  if (client.status === 'ready') return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ready: boolean) => {
      clearTimeout(timer);
      client.off('ready', onReady);
      resolve(ready);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    client.on('ready', onReady);
  });
}
