import type { Config } from '../config/types.js';
import type { Logger } from '../observability/log.js';
import type { Metrics } from '../observability/metrics.js';
import type { LoginGuard } from './login-guard.js';
import type { ConnectionGate } from '../net/connection-gate.js';
import { ConnectionLimits } from '../net/connection-limits.js';
import { CidrList } from '../net/cidr.js';
import { describeSwitchedOff } from './rate-limit/policy.js';
import { loadHmacKey } from './rate-limit/hmac.js';
import { InsuredStore } from './rate-limit/insurance.js';
import { RateLimitGuard, type GuardStore } from './rate-limit/guard.js';
import { MemoryLimitStore, RedisLimitStore } from './rate-limit/store.js';
import { createRedisClient, describeRedisTarget, waitUntilReady } from './rate-limit/redis-client.js';
import { SharedRedis } from './rate-limit/shared-redis.js';

/** Failed-login protection and connection admission for one running popwarden. */
export interface Protection {
  readonly guard: LoginGuard;
  readonly gate: ConnectionGate;
  /** Redis for the other shared state (backend memory, APOP users); undefined without Redis. */
  readonly shared: SharedRedis | undefined;
  /** True while the shared store (Redis) is in use; undefined without Redis. */
  storeUp(): boolean | undefined;
  close(): Promise<void>;
}

/** A few ms over the command timeout: a MULTI or Lua call is several commands on one deadline. */
const DEADLINE_SLACK_MS = 50;

/**
 * Builds the protection as configured: the connection gate (deny list, per-IP bounds), and the
 * failed-login guard over Redis (with the in-memory insurance) or over process memory alone.
 * A Redis that does not answer at startup does not stop popwarden: it starts under the insurance
 * (or fail_closed) and switches to Redis when it answers.
 */
export async function createProtection(config: Config, log: Logger, metrics: Metrics): Promise<Protection> {
  const rateLimit = config.rateLimit;
  const allow = new CidrList(rateLimit.allow);
  const deny = new CidrList(rateLimit.deny);
  const gate = new ConnectionLimits({
    maxSessionsPerIp: config.limits.maxSessionsPerIp,
    maxNewConnectionsPerIp: config.limits.maxNewConnectionsPerIp,
    maxNewConnectionsPerIpPerMinute: config.limits.maxNewConnectionsPerIpPerMinute,
    maxProtocolErrorsPerIpPerHour: config.limits.maxProtocolErrorsPerIpPerHour,
    maxSessions: config.limits.maxSessions,
    ipv6PrefixLength: rateLimit.ipv6PrefixLength,
    allow,
    deny,
  });
  const hmac = loadHmacKey(rateLimit.hmacKeyFile, config.stateDir);
  if (hmac.generated) {
    log.warn(
      { file: hmac.file },
      'generated the rate-limit HMAC key; instances that share a Redis must share this file (rate_limit.hmac_key_file)',
    );
  }
  for (const note of describeSwitchedOff(rateLimit)) log.warn(note);
  const memory = new MemoryLimitStore(rateLimit);
  const limits = {
    userIp: rateLimit.userIp,
    ip: rateLimit.ip,
    user: rateLimit.user,
    allow: rateLimit.allow.length,
    deny: rateLimit.deny.length,
  };

  const client = createRedisClient(config.redis);
  if (client === undefined) {
    log.info({ ...limits }, 'rate limiting in process memory (no redis configured): limits are per instance and reset on restart');
    const guard = new RateLimitGuard({ config: rateLimit, store: plainStore(memory), hmacKey: hmac.key, allow, log });
    return { guard, gate, shared: undefined, storeUp: () => undefined, close: () => guard.close() };
  }

  client.on('error', (error: Error) => log.debug({ err: error }, 'redis client error'));
  const target = describeRedisTarget(config.redis);
  const upAtStart = await waitUntilReady(client, config.redis.connectTimeoutMs);
  const deadlineMs = config.redis.commandTimeoutMs + DEADLINE_SLACK_MS;
  const store = new InsuredStore({
    primary: new RedisLimitStore(client, rateLimit),
    client,
    insurance: memory,
    mode: rateLimit.onStoreFailure,
    deadlineMs,
    log,
    metrics,
    upAtStart,
  });
  if (upAtStart) log.info({ redis: target, onStoreFailure: rateLimit.onStoreFailure, ...limits }, 'rate limiting in Redis, shared by every instance');
  const shared = new SharedRedis(client, rateLimit.keyPrefix, hmac.key, deadlineMs, log, () => store.up);
  const disconnect = async (): Promise<void> => {
    store.close();
    shared.close();
    client.disconnect();
  };
  const guard = new RateLimitGuard({ config: rateLimit, store, hmacKey: hmac.key, allow, log, close: disconnect });
  return { guard, gate, shared, storeUp: () => store.up, close: () => guard.close() };
}

/** A memory store needs no insurance: it never fails, and settles its own reservations. */
function plainStore(store: MemoryLimitStore): GuardStore {
  return { reserve: async (keys) => ({ reservation: await store.reserve(keys), settleIn: store }) };
}
