import type { AddressInfo } from 'node:net';
import type { Config, ListenerConfig } from './config/types.js';
import type { Logger } from './observability/log.js';
import { loadTlsMaterial, type TlsMaterial } from './net/tls-material.js';
import { planReload } from './config/reload.js';
import { backendKey } from './config/backend-keys.js';
import { TlsProvider } from './net/tls-provider.js';
import { HandshakeLimiter } from './net/handshake-limit.js';
import { ReturningClients } from './net/returning-clients.js';
import { RefusalHold } from './net/refusal-hold.js';
import { MAX_HELD_REFUSALS, REFUSAL_HOLD_MS } from './config/limits.js';
import { bindListener, type BoundServer } from './net/listeners.js';
import { Routing } from './backend/routing/routing.js';
import { Session, type SessionDependencies } from './session/session.js';
import { SessionState } from './session/states.js';
import { FailureDeadline } from './session/failure-deadline.js';
import { BackendMemory, unseenStlsWarning } from './backend/memory.js';
import { BackendPrograms } from './backend/programs.js';
import { ApopUsers } from './backend/apop-users.js';
import { SharedBackendMemory, type OfferMemory } from './backend/shared-memory.js';
import { SharedApopUsers, type ApopMemory } from './backend/shared-apop-users.js';
import { CapabilityCache } from './backend/capability-cache.js';
import type { SharedRedis } from './auth/rate-limit/shared-redis.js';
import { NO_METRICS, type Metrics } from './observability/metrics.js';
import { ALLOW_ALL, type LoginGuard } from './auth/login-guard.js';
import { canonicalUser } from './auth/rate-limit/keys.js';
import { OPEN_GATE, type ConnectionGate } from './net/connection-gate.js';
import { CidrList } from './net/cidr.js';
import { HeaderWaits, type ClientOrigin } from './net/proxy-intake.js';
import { oldestEvictable, type Aged } from './net/evict-oldest.js';

/** A live session, with when it started and the release of its place under the gate's bounds. */
interface SessionSlot extends Aged {
  readonly session: Session;
  readonly release: () => void;
}

/** A listener after bind: its configuration and the address the kernel gave it (port 0 in tests). */
export interface BoundListener {
  readonly config: ListenerConfig;
  readonly address: AddressInfo;
}

/** A started popwarden: what it listens on, and how to stop it. */
export interface RunningProxy {
  readonly listeners: readonly BoundListener[];
  /**
   * Stops accepting at once, lets commands in flight finish for up to `drainMs` (default 0),
   * then closes every remaining session, and lets their failed logins settle without waiting
   * for their deadlines; resolves when all are gone. Close the guard only after this.
   */
  close(options?: { readonly drainMs?: number }): Promise<void>;
}

/** A RunningProxy that can also reload its configuration and certificates. */
export interface ReloadableProxy extends RunningProxy {
  /** The TLS material in use (it follows reloads). */
  readonly tls: TlsProvider;
  /**
   * Re-reads the config (ProxyDependencies.loadConfig, else the running one) and every
   * certificate; a complete valid set is swapped in for new handshakes and sessions while live
   * sessions go on, anything invalid is refused and the old set stays. Never rejects.
   */
  reload(): Promise<ReloadOutcome>;
}

/** How a reload went; `error` is the one-line reason a refused one was refused. */
export type ReloadOutcome =
  | { readonly ok: true; readonly needsRestart: readonly string[]; readonly config: Config }
  | { readonly ok: false; readonly error: string };

export interface ProxyDependencies {
  readonly log: Logger;
  /** Plain material is wrapped in a TlsProvider; pass a provider to reload it later. */
  readonly tls: TlsMaterial | TlsProvider;
  /** Default: no metrics. */
  readonly metrics?: Metrics;
  /** Failed-login protection. Default: none beyond the failure delay. */
  readonly guard?: LoginGuard;
  /** Admission at TCP accept. Default: every connection is admitted. */
  readonly gate?: ConnectionGate;
  /**
   * Redis, for the state every instance must agree on (what backends offered, how users log in
   * to APOP backends). Default: none; that state is this process's own.
   */
  readonly shared?: SharedRedis;
  /** Reads the config again for reload() (throws ConfigError). Default: the running config. */
  readonly loadConfig?: () => Config;
  /** Builds TLS material for reload(). Default: loadTlsMaterial. */
  readonly loadTls?: (config: Config, log: Logger) => Promise<TlsMaterial>;
  /** The clock, in ms, for the ages of handshakes and sessions that a full bound may evict. Default: performance.now. */
  readonly now?: () => number;
  /** When failed logins are answered (tests hold and release each deadline). Default: a FailureDeadline on the wall clock. */
  readonly failureDeadline?: FailureDeadline;
  /** How long a connection refused for its address's rate waits for its close (net/refusal-hold.ts). Default REFUSAL_HOLD_MS; 0: none. */
  readonly refusalHoldMs?: number;
}

/**
 * A listener behind a load balancer: whom it takes a PROXY header from, how long it waits for one,
 * and the process-wide bound on connections waiting for theirs.
 */
function proxyIntake(listener: ListenerConfig, config: Config, waits: HeaderWaits): { proxy?: { trusted: CidrList; timeoutMs: number; waits: HeaderWaits } } {
  if (listener.proxyProtocol === undefined) return {};
  return { proxy: { trusted: new CidrList(listener.proxyProtocol.trusted), timeoutMs: config.timeouts.proxyProtocolMs, waits } };
}

/** Binds every listener (all or nothing) and serves sessions until close(). */
export async function startPopwarden(config: Config, deps: ProxyDependencies): Promise<ReloadableProxy> {
  const { log } = deps;
  const tls = TlsProvider.from(deps.tls);
  const now = deps.now ?? (() => performance.now());
  // Kept for the life of the process, across reloads: a reload does not make the owner a stranger.
  const returning = new ReturningClients({ ttlMs: config.rateLimit.trustedPairMs, ipv6PrefixLength: config.rateLimit.ipv6PrefixLength });
  tls.handshakes = new HandshakeLimiter({
    maxPerIp: config.limits.maxHandshakesPerIp,
    maxTotal: config.limits.maxHandshakes,
    ipv6PrefixLength: config.rateLimit.ipv6PrefixLength,
    now,
    returning: (address) => returning.accountOf(address),
  });
  const metrics = deps.metrics ?? NO_METRICS;
  const guard = deps.guard ?? ALLOW_ALL;
  const gate = deps.gate ?? OPEN_GATE;
  // Sessions read these when they start; reload() replaces them for sessions started afterwards.
  let current = config;
  const routing = new Routing(config, log, metrics);
  let router = routing.router;
  for (const backend of config.backends.filter((b) => b.tlsInsecure)) {
    log.warn({ backend: backend.name }, `backend certificates are NOT verified (${backendKey(backend, 'tls_insecure')}): the backend link is encrypted but not authenticated`);
  }
  const failureDeadline = deps.failureDeadline ?? new FailureDeadline(log);
  const localMemory = new BackendMemory(config.stateDir);
  const backendPrograms = new BackendPrograms(log, { ipv6PrefixLength: config.rateLimit.ipv6PrefixLength, exempt: new CidrList(config.rateLimit.allow), now });
  const localApopUsers = new ApopUsers(config.rateLimit.usernameCanonical);
  const backendMemory: OfferMemory = deps.shared === undefined ? localMemory : new SharedBackendMemory(localMemory, deps.shared);
  const apopUsers: ApopMemory =
    deps.shared === undefined ? localApopUsers : new SharedApopUsers(localApopUsers, deps.shared, config.rateLimit.usernameCanonical);
  // Kept across reloads: an entry is checked against each login's own configuration and offer memory.
  const capabilityCache = new CapabilityCache();
  for (const backend of config.backends) {
    const unseenStls = unseenStlsWarning(backend, localMemory);
    if (unseenStls !== undefined) log.warn({ backend: backend.name }, unseenStls);
  }
  /** Live sessions, oldest first (a Map keeps insertion order). */
  const sessions = new Map<Session, SessionSlot>();
  /**
   * The live sessions that may still be evicted, oldest first: a logged-in session never qualifies
   * again, so the walk drops it the first time it meets one, and a bound full of logged-in sessions
   * costs each refused connection one step, not max_sessions of them.
   */
  const evictionCandidates = new Map<Session, SessionSlot>();
  // Counted to the account as the limiter counts it: spellings of one account are one account.
  const onLoggedIn = (client: ClientOrigin, user: string): void => returning.remember(client.address, canonicalUser(user, current.rateLimit.usernameCanonical));
  const onProtocolError = (client: ClientOrigin): void => gate.protocolError(client.address);
  const onClosed = (session: Session): void => {
    sessions.delete(session);
    evictionCandidates.delete(session);
  };
  // limits.max_sessions is full: the oldest session not logged in gives its place, released at
  // once rather than when its socket has closed, so the connection waiting for it is admitted now.
  // With none, the oldest stalled handshake: each holds a max_sessions place before it is a
  // session, and with max_sessions at or under max_handshakes they alone could fill it. (One on
  // the TLS port gives its place at once; one after STLS when its socket has closed, a tick later.)
  const evictIdleSession = (): boolean => evictSession() || tls.handshakes.evictOldest();
  const evictSession = (): boolean => {
    const victim = oldestEvictable(evictionCandidates.values(), now(), (slot) => {
      if (slot.session.evictable) return true;
      if (slot.session.state === SessionState.transaction) evictionCandidates.delete(slot.session);
      return false;
    });
    if (victim === undefined) return false;
    victim.session.evict();
    victim.release();
    return true;
  };
  // What the sessions of one listener share, made once per listener and configuration rather
  // than once per session (an idle session would keep its own copy); reload() starts afresh.
  let sessionDeps = new Map<ListenerConfig, SessionDependencies>();
  const sessionDepsFor = (listener: ListenerConfig): SessionDependencies => {
    let made = sessionDeps.get(listener);
    if (made === undefined) {
      made = { config: current, listener, tls, router, log, metrics, guard, failureDeadline, backendMemory, apopUsers, capabilityCache, backendPrograms, onClosed, onLoggedIn, onProtocolError };
      sessionDeps.set(listener, made);
    }
    return made;
  };

  // limits.max_handshakes bounds these too: a connection waiting for its PROXY header is one step
  // before its handshake (or its greeting), and HAProxy sends the header with its first segment,
  // so only a stalled or hostile connection from inside proxy_protocol_trusted waits long.
  const headerWaits = new HeaderWaits(config.limits.maxHandshakes);
  const hold = new RefusalHold(deps.refusalHoldMs ?? REFUSAL_HOLD_MS, MAX_HELD_REFUSALS);
  const bound: BoundServer[] = [];
  /** close() has begun: a connection that becomes a session from now on is turned away. */
  let closing = false;
  try {
    for (const listener of config.listeners) {
      bound.push(
        await bindListener(listener, { tls, log, metrics, gate, evictIdleSession, returning, hold, ...proxyIntake(listener, config, headerWaits) }, (socket, secure, listenerConfig, client, release) => {
          const session = new Session(socket, secure, sessionDepsFor(listenerConfig), client);
          if (closing) {
            // Accepted before close(), its handshake or PROXY header done only now: close() has
            // already closed the sessions it knew of, and a late one would be served by a process
            // that is stopping (its failed logins settled at once) and hold close() while it lasts.
            session.turnAwayShuttingDown();
            return;
          }
          const slot = { session, startedAt: now(), release };
          sessions.set(session, slot);
          evictionCandidates.set(session, slot);
          session.start();
        }),
      );
    }
  } catch (error) {
    await Promise.all(bound.map(({ server }) => new Promise((resolve) => server.close(resolve))));
    await routing.close();
    throw error;
  }
  for (const { config: listener, address } of bound) {
    log.info({ listener: listener.name, kind: listener.kind, address: `${address.address}:${address.port}` }, 'listening');
  }

  const loadTls = deps.loadTls ?? loadTlsMaterial;
  const reloadOnce = async (): Promise<ReloadOutcome> => {
    try {
      const plan = planReload(current, deps.loadConfig === undefined ? current : deps.loadConfig());
      const material = await loadTls(plan.config, log);
      router = routing.reload(plan.config);
      tls.replace(material);
      current = plan.config;
      sessionDeps = new Map();
      metrics.configReload(true);
      if (plan.needsRestart.length > 0) {
        log.warn({ keys: plan.needsRestart }, 'reload: these settings changed but need a restart; they keep their old values until then');
      }
      log.info({ certificates: material.certificates?.length ?? 1 }, 'reloaded: new sessions and handshakes use the new configuration and certificates');
      return { ok: true, needsRestart: plan.needsRestart, config: plan.config };
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      metrics.configReload(false);
      log.error({ reason: message }, 'reload refused: the running configuration and certificates stay in use');
      return { ok: false, error: message };
    }
  };
  // One reload at a time: a SIGHUP during a file-watch reload waits its turn instead of racing it.
  let reloading: Promise<unknown> = Promise.resolve();

  return {
    listeners: bound.map(({ config: listener, address }) => ({ config: listener, address })),
    tls,
    reload(): Promise<ReloadOutcome> {
      const next = reloading.then(reloadOnce);
      reloading = next;
      return next;
    },
    async close(options = {}): Promise<void> {
      closing = true;
      const listenersClosed = bound.map(({ server }) => new Promise((resolve) => server.close(resolve)));
      // A server closes once its last connection has: the held refusals go now.
      hold.releaseAll();
      const remaining = [...sessions.keys()];
      for (const session of remaining) session.drain();
      const drainMs = options.drainMs ?? 0;
      if (drainMs > 0 && sessions.size > 0) {
        log.info({ sessions: sessions.size, drainMs }, 'waiting for commands in flight to finish');
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          Promise.all(remaining.map((session) => session.closed)),
          new Promise((resolve) => (timer = setTimeout(resolve, drainMs))),
        ]);
        clearTimeout(timer);
      }
      for (const session of [...sessions.keys()]) session.close('server-shutdown');
      // Their failed logins need not wait for their deadlines any more: they settle now, while
      // the rate-limit store is still open (the guard's close() finishes this wait). Begun here,
      // beside the reaping of programs, so that the two bounds overlap rather than add up within
      // the time the unit leaves after the drain (MAX_SHUTDOWN_MS).
      failureDeadline.endWaits();
      const reservationsSettled = guard.settleReservations();
      await Promise.all(listenersClosed);
      // Each closed session has signalled its program; wait until they are all reaped.
      await backendPrograms.close();
      await routing.close();
      await reservationsSettled;
    },
  };
}
