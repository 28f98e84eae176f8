/**
 * An unknown user (no route, no default) must look exactly like a wrong password (issue 13.3): the
 * same reply, answered through the same failure deadline, and counted by the limiter as a refused
 * password, so that routing cannot be used to find out which users exist. No timing is measured:
 * the deadline's use is observed, the limiter's count is read back.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { authenticate, type LoginDependencies } from '../../src/session/login.js';
import { Credentials } from '../../src/auth/credentials.js';
import { Router } from '../../src/backend/routing/router.js';
import { staticSource } from '../../src/backend/routing/static-source.js';
import { BackendMemory } from '../../src/backend/memory.js';
import { ApopUsers } from '../../src/backend/apop-users.js';
import { BackendPrograms } from '../../src/backend/programs.js';
import { BackendRejectedError } from '../../src/errors.js';
import { createProtection } from '../../src/auth/protection.js';
import { FailureDeadline } from '../../src/session/failure-deadline.js';
import { createLogger } from '../../src/observability/log.js';
import { NO_METRICS } from '../../src/observability/metrics.js';
import type { LoginGuard, LoginVerdict } from '../../src/auth/login-guard.js';
import { LogCapture } from '../harness/log-capture.js';
import { testConfig } from '../harness/popwarden.js';

/** A FailureDeadline that says when it was used, and with which step. */
class ObservedDeadline extends FailureDeadline {
  readonly steps: number[] = [];
  override wait(startedAt: number, stepMs: number): Promise<void> {
    this.steps.push(stepMs);
    return super.wait(startedAt, stepMs);
  }
}

/** Wraps a guard so each settled verdict is recorded. */
function recording(guard: LoginGuard, verdicts: LoginVerdict[]): LoginGuard {
  return {
    ...guard,
    async reserve(attempt) {
      const decision = await guard.reserve(attempt);
      if (decision.kind !== 'allowed') return decision;
      return { ...decision, settle: (verdict: LoginVerdict) => (verdicts.push(verdict), decision.settle(verdict)) };
    },
  };
}

describe('an unknown user', () => {
  it('gets the wrong-password reply through the failure deadline, and is counted by the limiter', async () => {
    const base = testConfig({
      // A backend nobody listens on: no route leads there, so nothing may try it.
      backends: [{ name: 'mail1', host: '127.0.0.1', port: 1 }],
      routing: { routes: [{ match: { kind: 'domain', domain: 'example.org' }, backend: 'mail1', rewrite: undefined }], defaultBackend: undefined },
      authFailureDelayMs: 7,
    });
    const config = { ...base, rateLimit: { ...base.rateLimit, userIp: { ...base.rateLimit.userIp, maxFailures: 3 } } };
    const logs = new LogCapture();
    const log = createLogger('info', logs.stream);
    const verdicts: LoginVerdict[] = [];
    const deadline = new ObservedDeadline(log);
    const protection = await createProtection(config, log, NO_METRICS);
    const deps: LoginDependencies = {
      config,
      router: new Router(config, [staticSource(config.routing.routes, true)], log, NO_METRICS),
      metrics: NO_METRICS,
      guard: recording(protection.guard, verdicts),
      failureDeadline: deadline,
      backendMemory: new BackendMemory(config.stateDir),
      apopUsers: new ApopUsers(config.rateLimit.usernameCanonical),
      backendPrograms: new BackendPrograms(log),
    };
    const attempt = (user: string, password: string) =>
      authenticate(
        {
          credentials: new Credentials(user, Buffer.from(password)),
          mechanism: 'user',
          client: { address: '192.0.2.9', port: 40_000, localAddress: '127.0.0.1', localPort: 995, via: undefined },
          tlsProtocol: 'TLSv1.3',
          attempt: 1,
          log,
          clientGone: () => false,
          onBackendIdleFailure: () => undefined,
        },
        deps,
      );
    try {
      const outcomes = [];
      // Different guesses: the same wrong password again is not counted twice (a stale device).
      for (let i = 0; i < 4; i++) outcomes.push(await attempt('nobody@example.com', `guess-${i}`));
      // The reply a refused password gets (BackendRejectedError without a code), byte for byte.
      const wrongPassword = new BackendRejectedError(undefined, 'whatever the backend said').clientReply;
      assert.deepEqual(outcomes.slice(0, 3), Array(3).fill({ kind: 'reply', text: wrongPassword }));
      assert.deepEqual(verdicts, ['refused', 'refused', 'refused'], 'judged as a refused password');
      assert.deepEqual(outcomes[3], { kind: 'reply', text: '-ERR [SYS/TEMP] Too many failed logins, try again later' }, 'the 4th is blocked by user_ip');
      assert.deepEqual(deadline.steps, [7, 7, 7, 7], 'every failure waited for the deadline on the auth_failure_delay grid');
      const audits = logs.entries().filter((e) => e['event'] === 'login');
      assert.deepEqual(audits.map((e) => [e['result'], e['route']]), [['failure', 'none'], ['failure', 'none'], ['failure', 'none'], ['blocked', undefined]]);
    } finally {
      await protection.close();
    }
  });
});
