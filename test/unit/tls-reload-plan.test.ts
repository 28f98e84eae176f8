import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { planReload } from '../../src/config/reload.js';
import { testConfig } from '../harness/popwarden.js';

describe('planReload: what a reload applies and what needs a restart', { timeout: 5_000 }, () => {
  const running = testConfig({ backend: { host: '127.0.0.1', port: 1110 } });

  it('applies per-session settings and reports nothing when only those changed', () => {
    const next = { ...running, greeting: 'new greeting', backends: [{ ...running.backends[0]!, address: { kind: 'tcp' as const, host: '127.0.0.1', port: 2110 } }], timeouts: { ...running.timeouts, preAuthMs: 5_000 } };
    const plan = planReload(running, next);
    assert.deepEqual(plan.needsRestart, []);
    assert.equal(plan.config.greeting, 'new greeting');
    assert.deepEqual(plan.config.backends[0]!.address, { kind: 'tcp', host: '127.0.0.1', port: 2110 });
    assert.equal(plan.config.timeouts.preAuthMs, 5_000);
  });

  it('keeps listeners, log level, Redis, rate limits and per-IP bounds, and names them', () => {
    const next = {
      ...running,
      listeners: [{ kind: 'tls' as const, host: '127.0.0.1', port: 995, name: 'tls:127.0.0.1:995' }],
      logLevel: 'warn' as const,
      limits: { ...running.limits, maxSessionsPerIp: 3, maxInvalidCommands: 2 },
      rateLimit: { ...running.rateLimit, keyPrefix: 'other' },
    };
    const plan = planReload(running, next);
    assert.deepEqual(plan.needsRestart, ['listen_tls/listen_stls', 'log_level', 'rate_limit', 'limits.max_sessions_per_ip']);
    assert.equal(plan.config.listeners, running.listeners);
    assert.equal(plan.config.logLevel, running.logLevel);
    assert.equal(plan.config.rateLimit, running.rateLimit);
    assert.equal(plan.config.limits.maxSessionsPerIp, running.limits.maxSessionsPerIp);
    assert.equal(plan.config.limits.maxInvalidCommands, 2);
  });

  it('keeps timeouts.shutdown (the signal handler has it) and says it needs a restart', () => {
    const running = testConfig({ backend: { host: '127.0.0.1', port: 110 }, timeouts: { shutdownMs: 20_000 } });
    const next = testConfig({ backend: { host: '127.0.0.1', port: 110 }, timeouts: { shutdownMs: 1_000 } });
    const plan = planReload(running, next);
    assert.deepEqual(plan.needsRestart, ['timeouts.shutdown']);
    assert.equal(plan.config.timeouts.shutdownMs, 20_000);
  });
});
