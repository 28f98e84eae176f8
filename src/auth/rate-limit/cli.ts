/**
 * `popwarden ratelimit status|unblock|list`: the operator's view of the shared limits, against the
 * Redis in the config (same -c FILE, flags and POPWARDEN_* variables as the daemon). Exit codes:
 * 0 done (status: nothing blocked), 1 error (no Redis configured, Redis unreachable, bad config),
 * 2 usage error, 3 status: something is blocked.
 */
import { Cluster } from 'ioredis';
import { loadConfig } from '../../config/load.js';
import type { Config, LimiterPolicy } from '../../config/types.js';
import { isIP } from 'node:net';
import { KEY_KINDS, canonicalUser, encodeUser, pairId, storeKey } from './keys.js';
import { ipKey } from '../../net/addresses.js';
import { createRedisClient, describeRedisTarget, waitUntilReady, type RedisClient } from './redis-client.js';

export const EXIT = { ok: 0, error: 1, usage: 2, blocked: 3 } as const;

const USAGE = `Usage:
  popwarden ratelimit status --user USER [--ip ADDRESS] [config options]
  popwarden ratelimit status --ip ADDRESS [config options]
  popwarden ratelimit unblock --user USER | --ip ADDRESS [config options]
  popwarden ratelimit list [config options]

Reads the Redis of the configuration (-c FILE, --redis URL, POPWARDEN_REDIS__URL, ...).
Exit status: 0 done (status: not blocked), 1 error, 2 usage, 3 status: blocked.
`;

export interface CliOutput {
  out(text: string): void;
  err(text: string): void;
}

class UsageError extends Error {}

/** Splits our own --user/--ip out of argv; the rest are config options. */
function splitArgs(argv: readonly string[]): { user?: string; ip?: string; rest: string[] } {
  const result: { user?: string; ip?: string; rest: string[] } = { rest: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    const match = /^--(user|ip)(?:=(.*))?$/.exec(arg);
    if (match === null) {
      result.rest.push(arg);
      continue;
    }
    const value = match[2] ?? argv[++i];
    if (value === undefined || value === '') throw new UsageError(`--${match[1]} needs a value`);
    if (match[1] === 'user') result.user = value;
    else result.ip = value;
  }
  return result;
}

/** "1h 2m 3s" */
function humanMs(ms: number): string {
  if (ms < 0) return 'no expiry';
  let seconds = Math.ceil(ms / 1000);
  const parts: string[] = [];
  for (const [unit, size] of [['d', 86_400], ['h', 3_600], ['m', 60]] as const) {
    if (seconds >= size) {
      parts.push(`${Math.floor(seconds / size)}${unit}`);
      seconds %= size;
    }
  }
  if (seconds > 0 || parts.length === 0) parts.push(`${seconds}s`);
  return parts.join(' ');
}

/** SCAN MATCH treats * ? [ ] \ specially; a typed username must match only itself. */
const globEscape = (text: string) => text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);

async function scan(client: RedisClient, pattern: string): Promise<string[]> {
  const nodes = client instanceof Cluster ? client.nodes('master') : [client];
  const keys = new Set<string>();
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, batch] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      for (const key of batch) keys.add(key);
    } while (cursor !== '0');
  }
  return [...keys].sort();
}

interface CounterState {
  readonly key: string;
  readonly failures: number;
  readonly msLeft: number;
  readonly blocked: boolean;
}

async function counter(client: RedisClient, key: string, policy: LimiterPolicy): Promise<CounterState | undefined> {
  const [value, ttl] = await Promise.all([client.get(key), client.pttl(key)]);
  if (value === null) return undefined;
  const failures = Number(value);
  return { key, failures, msLeft: ttl, blocked: policy.maxFailures > 0 && failures >= policy.maxFailures };
}

function describe(label: string, state: CounterState | undefined, policy: LimiterPolicy): string {
  if (state === undefined) return `${label}: no failures`;
  const limit = policy.maxFailures === 0 ? 'limiter off: max_failures 0' : `limit ${policy.maxFailures} per ${humanMs(policy.windowMs)}`;
  return state.blocked
    ? `${label}: BLOCKED for ${humanMs(state.msLeft)} (${state.failures} failures, ${limit})`
    : `${label}: ${state.failures} failure${state.failures === 1 ? '' : 's'}, not blocked (${limit}; counter expires in ${humanMs(state.msLeft)})`;
}

type Kind = 'userIp' | 'ip' | 'user';
const KINDS: Readonly<Record<Kind, (typeof KEY_KINDS)[keyof typeof KEY_KINDS]>> = { userIp: KEY_KINDS.userIp, ip: KEY_KINDS.ip, user: KEY_KINDS.user };

async function status(client: RedisClient, config: Config, user: string | undefined, ip: string | undefined, io: CliOutput): Promise<number> {
  const r = config.rateLimit;
  const key = (kind: Kind, id: string) => storeKey(r.keyPrefix, KINDS[kind], id);
  const lines: string[] = [];
  let blocked = false;
  const show = async (label: string, kind: Kind, id: string) => {
    const state = await counter(client, key(kind, id), r[kind]);
    blocked ||= state?.blocked === true;
    lines.push(describe(label, state, r[kind]));
  };
  const userId = user === undefined ? undefined : encodeUser(canonicalUser(user, r.usernameCanonical));
  const address = ip === undefined ? undefined : ipKey(ip, r.ipv6PrefixLength);
  if (userId !== undefined) await show(`user ${userId} (all addresses)`, 'user', userId);
  if (address !== undefined) await show(`address ${address} (all users)`, 'ip', address);
  if (userId !== undefined && address !== undefined) {
    const pair = pairId(userId, address);
    await show(`user ${userId} from ${address}`, 'userIp', pair);
    const trustedMs = await client.pttl(storeKey(r.keyPrefix, KEY_KINDS.trusted, pair));
    lines.push(
      trustedMs > 0
        ? `user ${userId} from ${address}: trusted for ${humanMs(trustedMs)} (logged in from there; exempt from the per-user block)`
        : `user ${userId} from ${address}: not trusted (no recent successful login from there)`,
    );
  } else if (userId !== undefined) {
    for (const pairKey of await scan(client, `${globEscape(key('userIp', `{${userId}@`))}*}`)) {
      const state = await counter(client, pairKey, r.userIp);
      blocked ||= state?.blocked === true;
      lines.push(describe(`user ${userId} from ${pairKey.slice(pairKey.indexOf('@') + 1, -1)}`, state, r.userIp));
    }
  }
  io.out(`${lines.join('\n')}\n`);
  return blocked ? EXIT.blocked : EXIT.ok;
}

async function unblock(client: RedisClient, config: Config, user: string | undefined, ip: string | undefined, io: CliOutput): Promise<number> {
  const r = config.rateLimit;
  const keys: string[] = [];
  const kindKey = (kind: string, id: string) => `${r.keyPrefix}:${kind}:${id}`;
  if (user !== undefined) {
    const userId = encodeUser(canonicalUser(user, r.usernameCanonical));
    keys.push(kindKey(KEY_KINDS.user, userId));
    for (const kind of [KEY_KINDS.userIp, KEY_KINDS.seen]) keys.push(...(await scan(client, `${globEscape(kindKey(kind, `{${userId}@`))}*}`)));
  }
  if (ip !== undefined) {
    const address = ipKey(ip, r.ipv6PrefixLength);
    keys.push(kindKey(KEY_KINDS.ip, address));
    for (const kind of [KEY_KINDS.userIp, KEY_KINDS.seen]) keys.push(...(await scan(client, `${globEscape(`${r.keyPrefix}:${kind}:{`)}*${globEscape(`@${address}}`)}`)));
  }
  // One DEL per key: in a Cluster they live in different slots.
  const removed = (await Promise.all(keys.map((key) => client.del(key)))).reduce((sum, n) => sum + n, 0);
  io.out(removed === 0 ? 'nothing to unblock: no failures recorded\n' : `removed ${removed} counter${removed === 1 ? '' : 's'}; unblocked\n`);
  return EXIT.ok;
}

async function list(client: RedisClient, config: Config, io: CliOutput): Promise<number> {
  const r = config.rateLimit;
  const rows: string[] = [];
  for (const kind of ['userIp', 'ip', 'user'] as const) {
    for (const key of await scan(client, `${globEscape(`${r.keyPrefix}:${KINDS[kind]}:`)}*`)) {
      const state = await counter(client, key, r[kind]);
      if (state?.blocked !== true) continue;
      const id = key.slice(`${r.keyPrefix}:${KINDS[kind]}:`.length);
      rows.push(`${KINDS[kind].padEnd(5)} ${id.padEnd(40)} ${humanMs(state.msLeft).padEnd(12)} ${state.failures}`);
    }
  }
  io.out(rows.length === 0 ? 'no current blocks\n' : `${'KIND'.padEnd(5)} ${'KEY'.padEnd(40)} ${'TIME LEFT'.padEnd(12)} FAILURES\n${rows.join('\n')}\n`);
  return EXIT.ok;
}

/** Runs `popwarden ratelimit ARGS`; returns the exit status. */
export async function runRateLimitCli(argv: readonly string[], env: NodeJS.ProcessEnv, io: CliOutput): Promise<number> {
  const [command, ...args] = argv;
  let parsed: ReturnType<typeof splitArgs>;
  try {
    if (command === undefined || command === '--help' || command === '-h') {
      io.out(USAGE);
      return command === undefined ? EXIT.usage : EXIT.ok;
    }
    if (!['status', 'unblock', 'list'].includes(command)) throw new UsageError(`unknown command "${command}"`);
    parsed = splitArgs(args);
    if (command !== 'list' && parsed.user === undefined && parsed.ip === undefined) throw new UsageError(`${command} needs --user or --ip`);
    if (command === 'list' && (parsed.user !== undefined || parsed.ip !== undefined)) throw new UsageError('list takes no --user or --ip');
    if (command === 'unblock' && parsed.user !== undefined && parsed.ip !== undefined) throw new UsageError('unblock takes --user or --ip, not both');
    if (parsed.ip !== undefined && isIP(parsed.ip) === 0) throw new UsageError(`--ip ${JSON.stringify(parsed.ip)} is not an IP address`);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    io.err(`popwarden ratelimit: ${error.message}\n${USAGE}`);
    return EXIT.usage;
  }

  let config: Config;
  try {
    // The backend is not used here; a placeholder spares operators from repeating it.
    const rest = parsed.rest.some((a) => a === '--backend' || a.startsWith('--backend=')) ? parsed.rest : [...parsed.rest, '--backend', '127.0.0.1:110'];
    const loaded = loadConfig(rest, env);
    if (loaded.action !== 'run' && loaded.action !== 'check') throw new Error('unexpected --help/--version');
    config = loaded.config;
  } catch (error) {
    io.err(`popwarden ratelimit: ${(error as Error).message}\n`);
    return EXIT.error;
  }
  const client = createRedisClient(config.redis);
  if (client === undefined) {
    io.err('popwarden ratelimit: no redis configured: the limits live in each popwarden process and cannot be inspected (set redis.url, or give --redis URL)\n');
    return EXIT.error;
  }
  client.on('error', () => undefined);
  try {
    if (!(await waitUntilReady(client, config.redis.connectTimeoutMs))) {
      io.err(`popwarden ratelimit: cannot reach Redis (${describeRedisTarget(config.redis)}) within ${config.redis.connectTimeoutMs} ms\n`);
      return EXIT.error;
    }
    switch (command) {
      case 'status':
        return await status(client, config, parsed.user, parsed.ip, io);
      case 'unblock':
        return await unblock(client, config, parsed.user, parsed.ip, io);
      default:
        return await list(client, config, io);
    }
  } catch (error) {
    io.err(`popwarden ratelimit: Redis error: ${(error as Error).message}\n`);
    return EXIT.error;
  } finally {
    client.disconnect();
  }
}
