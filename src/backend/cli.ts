/**
 * `popwarden backend show|forget ADDRESS [--state-dir DIR] [--config FILE]`: what popwarden
 * remembers each backend offered (BackendMemory), and how an operator accepts a backend that now
 * offers less. With --config and redis: in it, the memory every instance shares in Redis too.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { defaultStateDir, loadConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import { formatBackendAddress } from '../config/values.js';
import { createRedisClient, describeRedisTarget, waitUntilReady, type RedisClient } from '../auth/rate-limit/redis-client.js';
import { BackendMemory } from './memory.js';
import { sharedOffer, sharedOfferKey } from './shared-memory.js';

export interface BackendCliIo {
  out(text: string): void;
  err(text: string): void;
}

export const BACKEND_USAGE = `Usage: popwarden backend show [--state-dir DIR] [--config FILE]
       popwarden backend forget ADDRESS [--state-dir DIR] [--config FILE]

popwarden remembers the strongest login each backend offered (CRAM-MD5, APOP, cleartext) and
whether it offered STLS, and refuses a backend that later offers less: that is what an impostor
on the port or a man in the middle would do. If the backend was changed on purpose, forget it:
the next login remembers what it offers then. A running popwarden sees the change at once.
ADDRESS is the backend as \`show\` lists it: HOST:PORT, unix:/path, or "exec:/program args".

  --state-dir DIR   popwarden's state_dir (default: the config's, else $STATE_DIRECTORY, else ./.state)
  --config FILE     popwarden's config: its state_dir, and with redis: the memory every instance
                    shares there (show it, or forget it too; run forget on every instance)
`;

/** Runs `popwarden backend ...`; resolves the exit status (0 ok, 1 failure, 2 usage error). */
export async function runBackendCli(argv: readonly string[], env: NodeJS.ProcessEnv, io: BackendCliIo): Promise<number> {
  let parsed: { values: { 'state-dir'?: string; config?: string; help?: boolean }; positionals: string[] };
  try {
    parsed = parseArgs({
      args: [...argv],
      options: { 'state-dir': { type: 'string' }, config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    io.err(`popwarden backend: ${(error as Error).message}\n${BACKEND_USAGE}`);
    return 2;
  }
  const [command, address, ...extra] = parsed.positionals;
  if (parsed.values.help === true) {
    io.out(BACKEND_USAGE);
    return 0;
  }
  const valid = (command === 'show' && address === undefined) || (command === 'forget' && address !== undefined && extra.length === 0);
  if (!valid) {
    io.err(BACKEND_USAGE);
    return 2;
  }
  let config: Config | undefined;
  let client: RedisClient | undefined;
  try {
    if (parsed.values.config !== undefined) {
      const loaded = loadConfig(['--config', parsed.values.config], env);
      if (loaded.action !== 'run') throw new Error('unexpected --help/--version');
      config = loaded.config;
      client = await connect(config);
    }
    const memory = new BackendMemory(resolve(parsed.values['state-dir'] ?? config?.stateDir ?? defaultStateDir(env)));
    const prefix = config?.rateLimit.keyPrefix ?? '';
    if (command === 'show') {
      const local = memory.entries();
      if (client === undefined) {
        io.out(`${JSON.stringify(local, null, 2)}\n`);
        return 0;
      }
      // Redis holds one key per backend: the ones this instance knows of, and its config's.
      const addresses = new Set([...Object.keys(local), ...(config?.backends ?? []).map((backend) => formatBackendAddress(backend.address))]);
      const shared: Record<string, unknown> = {};
      for (const address of addresses) {
        const entry = await sharedOffer(client, prefix, address);
        if (entry !== undefined) shared[address] = entry;
      }
      io.out(`${JSON.stringify({ state_dir: local, redis: shared }, null, 2)}\n`);
      return 0;
    }
    const forgotLocally = memory.forget(address!);
    const forgotShared = client === undefined ? false : (await client.del(sharedOfferKey(prefix, address!))) > 0;
    if (!forgotLocally && !forgotShared) {
      io.err(`popwarden backend forget: ${address} is not remembered in ${memory.file}${client === undefined ? '' : ' nor in Redis'}\n`);
      return 1;
    }
    const where = [forgotLocally ? memory.file : undefined, forgotShared ? 'Redis' : undefined].filter((w) => w !== undefined).join(' and ');
    io.out(`forgot ${address} in ${where}: the next login remembers what it offers then\n`);
    return 0;
  } catch (error) {
    io.err(`popwarden backend ${command}: ${(error as Error).message}\n`);
    return 1;
  } finally {
    client?.disconnect();
  }
}

/** The config's Redis, connected; undefined without redis:. */
async function connect(config: Config): Promise<RedisClient | undefined> {
  const client = createRedisClient(config.redis);
  if (client === undefined) return undefined;
  client.on('error', () => undefined);
  if (!(await waitUntilReady(client, config.redis.connectTimeoutMs))) {
    client.disconnect();
    throw new Error(`cannot reach Redis (${describeRedisTarget(config.redis)}) within ${config.redis.connectTimeoutMs} ms`);
  }
  return client;
}
