/**
 * routing.redis_key: a Redis hash of `user -> backend name` and `*@domain -> backend name`, in the
 * redis: store every instance shares (nauthilus-director keeps its routes the same way). The
 * client is the rate-limit store's kind: no offline queue and redis.command_timeout, so a Redis
 * that is down or slow costs a login at most that long. Then the lookup is an `error`: the
 * router logs it, counts it and asks the next source (and routing.default).
 */
import { waitUntilReady, type RedisClient } from '../../auth/rate-limit/redis-client.js';
import { BACKEND_NAME } from '../../config/routing-schema.js';
import { domainOf } from './keys.js';
import type { RouteSource, SourceAnswer } from './source.js';

/** Statuses of a client still making its first connection (not an outage: that is "reconnecting"). */
const FIRST_CONNECT = new Set(['wait', 'connecting', 'connect']);

export function redisSource(client: RedisClient, hashKey: string, timeoutMs: number): RouteSource {
  const answer = (value: string | null): SourceAnswer | undefined => {
    if (value === null) return undefined;
    const backend = value.trim();
    return BACKEND_NAME.test(backend) ? { kind: 'backend', backend } : { kind: 'error', reason: 'a value in the hash is not a backend name' };
  };
  return {
    name: 'redis',
    async lookup(query): Promise<SourceAnswer | undefined> {
      try {
        // Logins right after start wait (at most the command timeout) for the first connection.
        if (FIRST_CONNECT.has(client.status) && !(await waitUntilReady(client, timeoutMs))) return { kind: 'error', reason: 'not connected yet' };
        const exact = answer(await client.hget(hashKey, query.key));
        if (exact !== undefined) return exact;
        const domain = domainOf(query.key);
        return domain === undefined ? undefined : answer(await client.hget(hashKey, `*@${domain}`));
      } catch (error) {
        return { kind: 'error', reason: error instanceof Error ? error.message : String(error) };
      }
    },
  };
}
