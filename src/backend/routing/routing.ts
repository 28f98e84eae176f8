/**
 * The route sources of a running popwarden and the Router built on them, rebuilt on reload. What
 * must outlive a reload lives here: the map file's last good map and its watch, and the Redis
 * connection (redis: is restart-only, so one client serves every router).
 */
import type { Config } from '../../config/types.js';
import type { Logger } from '../../observability/log.js';
import type { Metrics } from '../../observability/metrics.js';
import { createRedisClient, type RedisClient } from '../../auth/rate-limit/redis-client.js';
import { authHttpSource } from './auth-http.js';
import { MapFile } from './map-file.js';
import { redisSource } from './redis-source.js';
import { Router } from './router.js';
import type { RouteSource } from './source.js';
import { staticSource } from './static-source.js';

export class Routing {
  #router: Router;
  #mapFile: MapFile | undefined;
  #redis: RedisClient | undefined;

  constructor(
    config: Config,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {
    this.#router = this.#build(config);
  }

  /** The router for logins that start now. */
  get router(): Router {
    return this.#router;
  }

  /**
   * The router for a reloaded config; throws (and changes nothing) when it cannot be built. The
   * map file is re-read: a bad one keeps the last good map.
   */
  reload(config: Config): Router {
    this.#router = this.#build(config);
    return this.#router;
  }

  #build(config: Config): Router {
    const routing = config.routing;
    const lowerCase = config.rateLimit.usernameCanonical.lowerCase;
    const sources: RouteSource[] = [];
    if (routing.routes.length > 0) sources.push(staticSource(routing.routes, lowerCase));
    if (routing.mapFile !== undefined) {
      if (this.#mapFile?.path !== routing.mapFile || this.#mapFile.lowerCase !== lowerCase) {
        this.#mapFile?.close();
        this.#mapFile = new MapFile(routing.mapFile, lowerCase, this.log);
      } else {
        this.#mapFile.reload();
      }
      sources.push(this.#mapFile);
    } else {
      this.#mapFile?.close();
      this.#mapFile = undefined;
    }
    if (routing.redisKey !== undefined) {
      if (this.#redis === undefined) {
        this.#redis = createRedisClient(config.redis);
        // Failed lookups are logged once per outage by the router; the client's own events stay at debug.
        this.#redis?.on('error', (error: Error) => this.log.debug({ err: error }, 'routing redis client error'));
      }
      if (this.#redis !== undefined) sources.push(redisSource(this.#redis, routing.redisKey, config.redis.commandTimeoutMs));
    }
    if (routing.authHttp !== undefined) sources.push(authHttpSource(routing.authHttp));
    return new Router(config, sources, this.log, this.metrics);
  }

  async close(): Promise<void> {
    this.#mapFile?.close();
    this.#mapFile = undefined;
    const redis = this.#redis;
    this.#redis = undefined;
    if (redis !== undefined) await redis.quit().catch(() => redis.disconnect());
  }
}
