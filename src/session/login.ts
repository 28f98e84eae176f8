import type { Config } from '../config/types.js';
import { MAX_LOGGED_BACKEND_TEXT } from '../config/limits.js';
import { escapeForLog, type Logger } from '../observability/log.js';
import type { LoginResult, Metrics } from '../observability/metrics.js';
import { Reply } from '../pop3/replies.js';
import { Credentials } from '../auth/credentials.js';
import type { LoginAttempt, LoginGuard, LoginVerdict } from '../auth/login-guard.js';
import type { RouteDecision, Router } from '../backend/routing/router.js';
import { routeKey } from '../backend/routing/keys.js';
import { loginToBackend } from '../backend/login.js';
import type { OfferMemory } from '../backend/shared-memory.js';
import type { BackendPrograms } from '../backend/programs.js';
import type { ApopMemory } from '../backend/shared-apop-users.js';
import type { CapabilityCache } from '../backend/capability-cache.js';
import { BackendRejectedError, BackendUnavailableError, NoSafeMechanismError } from '../errors.js';
import type { ClientMechanism } from './context.js';
import type { ClientOrigin } from '../net/proxy-intake.js';
import { failureClock, type FailureDeadline } from './failure-deadline.js';
import { authenticated, replied, reply, type Outcome } from './outcome.js';

/** What a login needs that outlives the session: shared by every session of the process. */
export interface LoginDependencies {
  readonly config: Config;
  /** Chooses each login's backend (and the name it gets there). */
  readonly router: Router;
  readonly metrics: Metrics;
  /** Failed-login protection, consulted before every backend login. */
  readonly guard: LoginGuard;
  /** When failed logins are answered; one per process (it learns how slow the backend refuses). */
  readonly failureDeadline: FailureDeadline;
  /** What each backend offered before (a weaker offer is refused); shared through Redis when configured. */
  readonly backendMemory: OfferMemory;
  /** Where `exec:` backends run their programs. */
  readonly backendPrograms: BackendPrograms;
  /** How each user logged in to a backend that offers APOP (the cleartext retry after a refused APOP). */
  readonly apopUsers: ApopMemory;
  /** Backends' CAPA answers, reused for a minute (absent: every login asks CAPA). */
  readonly capabilityCache?: CapabilityCache;
}

/** One login attempt, as the session hands it over. */
export interface LoginRequest {
  /** Wiped when the login is over, whatever its end. */
  readonly credentials: Credentials;
  readonly mechanism: ClientMechanism;
  /** Who the client is (the address every limit counts, and what the backend is told). */
  readonly client: ClientOrigin;
  /** The client's TLS version, for the audit line. */
  readonly tlsProtocol: string | null;
  /** 1 for the session's first login attempt, then 2, 3 ... (told to an auth_http route service). */
  readonly attempt: number;
  /** The session's logger. */
  readonly log: Logger;
  /** Whether the session has closed meanwhile (the client hung up, a timeout, shutdown). */
  readonly clientGone: () => boolean;
  /** Told when the logged-in backend link breaks while the session is idle. */
  readonly onBackendIdleFailure: (error: BackendUnavailableError) => void;
}

/** Optional fields of the login audit line. */
interface AuditFields {
  /** The backend's name, and the username it got when that differs from the client's. */
  readonly backend?: string;
  readonly backendUser?: string;
  /** Which route source chose the backend, or "none". */
  readonly route?: string;
  readonly backendMechanism?: string;
  readonly limiter?: string;
  readonly backendCode?: string | undefined;
  readonly backendText?: string;
  readonly backendError?: string;
}

/**
 * A client's login, from complete credentials to the reply: the guard's reservation, the choice
 * of backend, the backend login, the reservation settled with the backend's verdict, and the
 * audit line. Returns `authenticated(backend, user)` or the reply a failure gets, at the failure
 * deadline. The bookkeeping of a judged attempt is awaited, and happens even when the client has
 * hung up meanwhile, or guessing one connection at a time would go uncounted.
 *
 * A failure's reservation is settled at its deadline, not at the verdict, and so is the place it
 * holds among an `exec:` backend's logins from its address: both are shared by every connection
 * of the address, and one given back at the verdict (a repeated wrong password, a program that
 * exited) would let a second connection sent between the verdict and the answer learn when the
 * backend refused, which the deadline hides. A client that has hung up is not answered,
 * but its places are held until the deadline all the same, or hanging up would show it instead.
 */
export async function authenticate(request: LoginRequest, deps: LoginDependencies): Promise<Outcome> {
  const { credentials, log } = request;
  // When the credentials arrived, on the deadline's monotonic clock (durations only).
  const startedAt = failureClock();
  const attempt: LoginAttempt = { ip: request.client.address, user: credentials.user, password: credentials.password };
  // Once routed, every audit line names the backend (and the name it got there).
  let routed: AuditFields = {};
  const audit = (result: LoginResult, fields: AuditFields = {}): void => writeAudit(request, deps.metrics, result, startedAt, { ...routed, ...fields });
  // Failed logins are answered at a deadline on a grid of the configured delay, counted from
  // when the credentials arrived, that does not follow the backend's speed: a wrong password and
  // an unknown user take the same time, and guessing gets slow.
  const failureDelay = (): Promise<void> => deps.failureDeadline.wait(startedAt, deps.config.authFailureDelayMs);
  let settle: (verdict: LoginVerdict) => Promise<void> = () => Promise.resolve();
  let loginPlace: (() => void) | undefined;
  /**
   * A failure's end: at its deadline (or `atLeastMs` after the credentials, an auth_http Auth-Wait,
   * if later) the reservation is settled, then the reply (none to a client that has gone).
   */
  const answerFailure = async (verdict: LoginVerdict, text: string, atLeastMs = 0): Promise<Outcome> => {
    await failureDelay();
    if (atLeastMs > 0) await deps.failureDeadline.waitAtLeast(startedAt, atLeastMs);
    await settle(verdict);
    return request.clientGone() ? replied : reply(text);
  };
  try {
    // A blocked guess never reaches the backend, not even with the right password, and
    // an allowed one is counted before it does, so parallel guesses cannot outrun the limits.
    const decision = await deps.guard.reserve(attempt);
    if (request.clientGone()) {
      if (decision.kind === 'allowed') await decision.settle('not_judged');
      return replied;
    }
    if (decision.kind === 'limited') {
      deps.metrics.rateLimitRejection(decision.limiter);
      audit('blocked', { limiter: decision.limiter });
      await failureDelay();
      return reply(decision.limiter === 'store_unavailable' ? Reply.loginUnavailable : Reply.tooManyFailures);
    }
    settle = decision.settle;
    // An exec: backend's logins from one address are bounded until each is answered (programs.ts).
    // Where any backend is exec:, every login takes its place before its route is known: an
    // unknown user must hold one as a known user does, or a full share would tell them apart.
    if (deps.config.backends.some((backend) => backend.address.kind === 'exec')) {
      loginPlace = deps.backendPrograms.enterLogin(request.client, deps.config.limits.maxBackendLoginsPerIp);
    }
    const route = await chooseRoute(request, deps);
    if (route.kind !== 'backend') {
      // No user enumeration: an unknown user (or one the route service refused) is answered as a
      // wrong password is, at the same deadline, and counts against the limits the same way.
      if (route.kind === 'drained') {
        await settle('not_judged');
        audit('backend_error', { backend: route.backend, route: route.source, backendError: 'drained' });
        return reply(Reply.backendUnavailable);
      }
      audit('failure', { route: route.kind === 'unknown' ? 'none' : 'auth_http' });
      return await answerFailure('refused', Reply.authFailed, route.kind === 'refused' ? route.waitMs : 0);
    }
    routed = { backend: route.target.config.name, route: route.source, ...(route.backendUser === credentials.user ? {} : { backendUser: escapeForLog(route.backendUser) }) };
    const backendCredentials = route.backendUser === credentials.user ? credentials : new Credentials(route.backendUser, credentials.password);
    let backend;
    try {
      backend = await loginToBackend(backendCredentials, {
        backend: route.target.config,
        client: request.client,
        tlsOptions: route.target.tlsOptions,
        timeouts: deps.config.timeouts,
        log,
        metrics: deps.metrics,
        memory: deps.backendMemory,
        apopUsers: deps.apopUsers,
        ...(deps.capabilityCache === undefined ? {} : { capabilityCache: deps.capabilityCache }),
        onIdleFailure: request.onBackendIdleFailure,
        programs: {
          programs: deps.backendPrograms,
          limit: deps.config.limits.maxBackendProcesses,
          log,
        },
      });
    } finally {
      if (backendCredentials !== credentials) backendCredentials.wipe();
    }
    // Off the reply's path: the client does not wait for the store to forget its failures
    // (the guard tracks it: LoginGuard.settled()).
    void settle('accepted');
    audit('success', { backendMechanism: backend.mechanism });
    return authenticated(backend, credentials.user);
  } catch (error) {
    if (error instanceof BackendRejectedError) {
      audit('failure', {
        backendCode: error.backendCode,
        backendText: escapeForLog(error.backendText, MAX_LOGGED_BACKEND_TEXT),
      });
      // Only a refused password counts against the limits; "in use" or "try later" do not.
      return await answerFailure(error.isCredentialFailure ? 'refused' : 'not_judged', error.clientReply);
    }
    if (error instanceof NoSafeMechanismError) {
      log.error({ code: error.code, reason: error.message, fix: error.hint }, 'refusing to log in to the backend');
      deps.metrics.backendError(error.code);
      audit('backend_error');
      return await answerFailure('not_judged', error.clientReply);
    }
    const gone = request.clientGone();
    if (error instanceof BackendUnavailableError) {
      // Silence or a hang-up once the credentials were sent counts as a failure: a backend
      // that stalls refusals (Dovecot's auth penalty) must not make guesses free (issue 9.4).
      const unanswered = isUnansweredCredentials(error);
      await settle(unanswered ? 'unanswered' : 'not_judged');
      if (gone) return replied; // most likely the session's own close() cut the login short
      log.warn({ code: error.code, step: error.step, reason: error.message }, 'backend login failed');
      deps.metrics.backendError(error.code);
      audit(unanswered ? 'failure' : 'backend_error', unanswered ? { backendError: error.code } : {});
      return reply(error.clientReply);
    }
    await settle('not_judged');
    throw error;
  } finally {
    loginPlace?.();
    credentials.wipe();
  }
}

/** The router's decision for this login; the limiter keys stay on the client's own name. */
function chooseRoute(request: LoginRequest, deps: LoginDependencies): Promise<RouteDecision> {
  const { credentials } = request;
  return deps.router.choose({
    key: routeKey(credentials.user, deps.config.rateLimit.usernameCanonical.lowerCase),
    user: credentials.user,
    password: () => credentials.password,
    clientIp: request.client.address,
    method: request.mechanism,
    attempt: request.attempt,
  });
}

/**
 * The backend went silent or hung up at the step that carries the credentials (from AUTH, APOP
 * or USER on): it may have judged them. Before that step nothing was sent that could be a guess.
 */
function isUnansweredCredentials(error: BackendUnavailableError): boolean {
  return error.step === 'auth' && (error.code === 'E_BACKEND_TIMEOUT' || error.code === 'E_BACKEND_CLOSED');
}

/** The one audit line per login attempt (and its metric): never a password or a SASL payload. */
function writeAudit(request: LoginRequest, metrics: Metrics, result: LoginResult, startedAt: number, fields: AuditFields): void {
  const durationMs = Math.round(failureClock() - startedAt);
  metrics.loginAttempt(request.mechanism, fields.backendMechanism, result, durationMs / 1000);
  request.log.info(
    {
      event: 'login',
      user: escapeForLog(request.credentials.user),
      clientMechanism: request.mechanism,
      ...fields,
      result,
      tls: request.tlsProtocol,
      durationMs,
    },
    'login attempt',
  );
}
