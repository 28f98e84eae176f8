/**
 * One load-generator process of the soak (bench/endurance.ts forks a few): simulated mail
 * clients that poll like real ones until told to stop. A good client connects (mostly implicit
 * TLS, some STLS), logs in, asks STAT, LIST and UIDL, fetches a few messages (mostly small, some
 * of 100 KB and 1 MB), sometimes marks one deleted and takes it back with RSET, and QUITs; it
 * thinks between commands, so most sessions sit idle in TRANSACTION most of the time, then it
 * reconnects after a short pause. A stale client (a saved password that is no longer right)
 * tries to log in now and then, gets -ERR, and QUITs: the limiter sees it, from addresses no good
 * client uses. Every client QUITs its session, so any other end of a session is a lost one.
 *
 * Counts go to the parent over IPC every 10 s and once more after the stop.
 */
import { PopClient, type Endpoint } from './pop-client.js';

export interface ClientPlan {
  readonly tlsPort: number;
  readonly stlsPort: number;
  readonly ca: string;
  /** Global indexes of this process's good clients and stale clients. */
  readonly good: readonly number[];
  readonly stale: readonly number[];
  readonly users: number;
  readonly staleUsers: number;
  /** Clients start spread over this many seconds. */
  readonly rampSeconds: number;
  /** Think time between two commands, uniformly in [min, max] seconds; the pause between sessions. */
  readonly thinkSeconds: readonly [number, number];
  readonly pauseSeconds: readonly [number, number];
  readonly stalePauseSeconds: readonly [number, number];
}

export interface ClientCounts {
  sessionsOpen: number;
  sessionsStarted: number;
  sessionsQuit: number;
  loginsOk: number;
  /** -ERR to a stale password: what should happen. */
  loginsRefused: number;
  retr: number;
  retrBytes: number;
  dele: number;
  /** Anything else that went wrong, by its first words. */
  errors: Record<string, number>;
}

/** The mailbox layout bench/endurance.ts writes: SMALL small messages, then one of 100 KB, one of 1 MB. */
export const SMALL_MESSAGES = 8;
export const MEDIUM_MESSAGE = SMALL_MESSAGES + 1;
export const LARGE_MESSAGE = SMALL_MESSAGES + 2;

/** Good client i connects from 127.0.(1 + i / 250).(1 + i % 250): at most one session per address. */
export const goodAddress = (i: number): string => `127.0.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;
/** Stale clients from 127.0.(100 + i / 250).x: their failures never count against a good client's address. */
export const staleAddress = (i: number): string => `127.0.${100 + Math.floor(i / 250)}.${1 + (i % 250)}`;

const counts: ClientCounts = { sessionsOpen: 0, sessionsStarted: 0, sessionsQuit: 0, loginsOk: 0, loginsRefused: 0, retr: 0, retrBytes: 0, dele: 0, errors: {} };
let stopping = false;
let wakeAll: () => void = () => undefined;
const stopped = new Promise<void>((resolve) => (wakeAll = resolve));

const uniform = ([min, max]: readonly [number, number]): number => min + Math.random() * (max - min);

/** Waits `seconds`, or less once the stop has come. */
async function think(seconds: number): Promise<void> {
  if (stopping) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([stopped, new Promise((resolve) => (timer = setTimeout(resolve, seconds * 1000)))]);
  clearTimeout(timer);
}

function countError(error: unknown): void {
  const text = (error instanceof Error ? error.message : String(error)).split(/\s+/).slice(0, 6).join(' ');
  counts.errors[text] = (counts.errors[text] ?? 0) + 1;
}

/** Which message to fetch: 90% small, then 100 KB, then 1 MB in 2:1. */
function messageToFetch(): number {
  const r = Math.random();
  if (r < 0.9) return 1 + Math.floor(Math.random() * SMALL_MESSAGES);
  return r < 0.967 ? MEDIUM_MESSAGE : LARGE_MESSAGE;
}

async function session(endpoint: Endpoint, run: (client: PopClient) => Promise<void>): Promise<void> {
  counts.sessionsStarted += 1;
  counts.sessionsOpen += 1;
  let client: PopClient | undefined;
  try {
    // Longer than any think time: a reply that does not come in this long is a stall.
    client = await PopClient.open(endpoint, 180_000);
    await run(client);
    await client.quit();
    counts.sessionsQuit += 1;
  } catch (error) {
    countError(error);
    client?.close();
  } finally {
    counts.sessionsOpen -= 1;
  }
}

async function goodClient(plan: ClientPlan, ca: Buffer, i: number): Promise<void> {
  const user = `user${1 + (i % plan.users)}`;
  const localAddress = goodAddress(i);
  await think(Math.random() * plan.rampSeconds);
  while (!stopping) {
    // About one session in seven over STLS on the plaintext port, the rest implicit TLS.
    const stls = Math.random() < 0.15;
    const endpoint: Endpoint = stls ? { port: plan.stlsPort, tls: false, starttls: true, ca, localAddress } : { port: plan.tlsPort, tls: true, ca, localAddress };
    await session(endpoint, async (client) => {
      await client.ok(`USER ${user}`);
      await client.ok(`PASS ${user}-pw`);
      counts.loginsOk += 1;
      await client.ok('STAT');
      await client.ok('LIST', true);
      await client.ok('UIDL', true);
      const fetches = 1 + Math.floor(Math.random() * 4);
      for (let f = 0; f < fetches && !stopping; f++) {
        await think(uniform(plan.thinkSeconds));
        const reply = await client.ok(`RETR ${messageToFetch()}`, true);
        counts.retr += 1;
        counts.retrBytes += reply.bodyBytes;
      }
      if (Math.random() < 0.1 && !stopping) {
        await client.ok(`DELE ${1 + Math.floor(Math.random() * SMALL_MESSAGES)}`);
        counts.dele += 1;
        await think(uniform(plan.thinkSeconds));
        await client.ok('RSET');
      }
      await think(uniform(plan.thinkSeconds));
    });
    await think(uniform(plan.pauseSeconds));
  }
}

async function staleClient(plan: ClientPlan, ca: Buffer, i: number): Promise<void> {
  const user = `stale${1 + (i % plan.staleUsers)}`;
  const localAddress = staleAddress(i);
  await think(Math.random() * plan.rampSeconds);
  while (!stopping) {
    await session({ port: plan.tlsPort, tls: true, ca, localAddress }, async (client) => {
      await client.ok(`USER ${user}`);
      const reply = await client.command('PASS not-the-password-any-more');
      if (reply.status.startsWith('+OK')) throw new Error('a wrong password was accepted');
      counts.loginsRefused += 1;
    });
    await think(uniform(plan.stalePauseSeconds));
  }
}

const report = (final: boolean): void => void process.send?.({ final, counts });

process.once('message', (message: { plan?: ClientPlan }) => {
  const plan = message.plan!;
  const ca = Buffer.from(plan.ca);
  const clients = [...plan.good.map((i) => goodClient(plan, ca, i)), ...plan.stale.map((i) => staleClient(plan, ca, i))];
  const ticker = setInterval(() => report(false), 10_000);
  process.on('message', (next: { stop?: boolean }) => {
    if (next.stop !== true) return;
    stopping = true;
    wakeAll();
  });
  void Promise.allSettled(clients).then(() => {
    clearInterval(ticker);
    report(true);
    process.disconnect();
  });
});
