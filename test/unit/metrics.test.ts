/**
 * The Prometheus implementation of the Metrics events: names, label allow-lists, gauges from
 * collect(), and an exposition that `promtool check metrics` accepts.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createPrometheusMetrics, CLOSE_REASONS, type PrometheusMetrics } from '../../src/observability/prometheus.js';
import { NO_METRICS, type Metrics } from '../../src/observability/metrics.js';
import type { CloseReason } from '../../src/session/states.js';

// Compile-time: a CloseReason added to session/states.ts without its label fails `npm run check`.
type UnlistedCloseReason = Exclude<CloseReason, (typeof CLOSE_REASONS)[number]>;
const everyCloseReasonListed: [UnlistedCloseReason] extends [never] ? true : UnlistedCloseReason = true;

const LISTENERS = [
  { name: 'tls:test', tls: 'implicit' as const },
  { name: 'stls:test', tls: 'starttls' as const },
];

function fresh(defaultMetrics = false): PrometheusMetrics {
  return createPrometheusMetrics({ version: '9.9.9', backends: ['default'], listeners: LISTENERS, defaultMetrics });
}

/** The value of one sample, by its exact name{labels} text (labels in exposition order). */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

describe('Prometheus metrics', () => {
  test('every Metrics event exists on the implementation and on NO_METRICS', () => {
    const metrics = fresh();
    for (const key of Object.keys(NO_METRICS) as (keyof Metrics)[]) {
      assert.equal(typeof metrics[key], 'function', key);
    }
  });

  test('build info, listener series and zeroed counters exist before any traffic', async () => {
    const text = await fresh().render();
    assert.equal(sample(text, `popwarden_build_info{version="9.9.9",node_version="${process.version}"}`), 1);
    assert.equal(sample(text, 'popwarden_connections_total{listener="tls:test",tls="implicit"}'), 0);
    assert.equal(sample(text, 'popwarden_connections_active{listener="stls:test",tls="starttls"}'), 0);
    assert.equal(sample(text, 'popwarden_ratelimit_store_errors_total'), 0);
    assert.equal(sample(text, 'popwarden_ratelimit_store_outages_total'), 0);
    assert.equal(sample(text, 'popwarden_config_last_reload_successful'), 1);
    assert.equal(sample(text, 'popwarden_config_reloads_total{result="failure"}'), 0);
    // State nobody reported yet is absent rather than a made-up 0 or 1.
    assert.doesNotMatch(text, /^popwarden_backend_up/m);
    assert.doesNotMatch(text, /^popwarden_ratelimit_store_up/m);
  });

  test('active connections follow opens, closes and failed implicit-TLS handshakes', async () => {
    const m = fresh();
    m.connectionOpened('tls:test', 'implicit');
    m.connectionOpened('tls:test', 'implicit');
    m.connectionOpened('tls:test', 'implicit');
    m.connectionOpened('stls:test', 'starttls');
    m.tlsHandshake('tls:test', 'failure', undefined, 0.01); // no session follows on the implicit port
    m.sessionClosed('tls:test', 'quit', 3);
    let text = await m.render();
    assert.equal(sample(text, 'popwarden_connections_active{listener="tls:test",tls="implicit"}'), 1);
    assert.equal(sample(text, 'popwarden_connections_active{listener="stls:test",tls="starttls"}'), 1);
    assert.equal(sample(text, 'popwarden_connections_total{listener="tls:test",tls="implicit"}'), 3);
    // A failed STLS handshake is followed by the session's close: counted once, not twice.
    m.tlsHandshake('stls:test', 'timeout', undefined, 5);
    m.sessionClosed('stls:test', 'tls-handshake-failed', 5);
    text = await m.render();
    assert.equal(sample(text, 'popwarden_connections_active{listener="stls:test",tls="starttls"}'), 0);
    // Never negative, whatever the order of events.
    m.sessionClosed('stls:test', 'quit', 1);
    text = await m.render();
    assert.equal(sample(text, 'popwarden_connections_active{listener="stls:test",tls="starttls"}'), 0);
  });

  test('label values are allow-listed: unknown verbs, reasons, versions and codes become "other"', async () => {
    const m = fresh();
    m.commandRelayed('RETR', 0.2);
    m.commandRelayed('uidl', 0.01);
    m.commandRelayed('XSECRETalice', 0.01);
    m.sessionClosed('tls:test', 'user alice from 10.0.0.1', 1);
    m.tlsHandshake('tls:test', 'success', 'SSLv3-bogus', 0.02);
    m.tlsHandshake('tls:test', 'success', 'TLSv1.3', 0.02);
    m.backendError('E_SOMETHING_NEW');
    m.backendError('E_BACKEND_TIMEOUT');
    m.loginAttempt('user', undefined, 'blocked', 2);
    m.loginAttempt('plain', 'apop', 'success', 0.1);
    m.loginAttempt('weird', 'ntlm', 'failure', 2);
    const text = await m.render();
    // One line per series, by its full exposition name, as the next test does: a failure names the series.
    assert.equal(sample(text, 'popwarden_commands_total{verb="RETR"}'), 1);
    assert.equal(sample(text, 'popwarden_commands_total{verb="UIDL"}'), 1);
    assert.equal(sample(text, 'popwarden_commands_total{verb="other"}'), 1);
    assert.equal(sample(text, 'popwarden_sessions_closed_total{listener="tls:test",reason="other"}'), 1);
    assert.equal(sample(text, 'popwarden_tls_handshakes_total{listener="tls:test",result="success",version="other"}'), 1);
    assert.equal(sample(text, 'popwarden_tls_handshakes_total{listener="tls:test",result="success",version="TLSv1.3"}'), 1);
    assert.equal(sample(text, 'popwarden_backend_errors_total{reason="other"}'), 1);
    assert.equal(sample(text, 'popwarden_backend_errors_total{reason="E_BACKEND_TIMEOUT"}'), 1);
    assert.equal(sample(text, 'popwarden_login_attempts_total{client_mechanism="user",backend_mechanism="none",result="blocked"}'), 1);
    assert.equal(sample(text, 'popwarden_login_attempts_total{client_mechanism="plain",backend_mechanism="apop",result="success"}'), 1);
    assert.equal(sample(text, 'popwarden_login_attempts_total{client_mechanism="other",backend_mechanism="other",result="failure"}'), 1);
    assert.equal(sample(text, 'popwarden_command_duration_seconds_count{verb="RETR"}'), 1);
    assert.equal(sample(text, 'popwarden_login_duration_seconds_count{result="blocked"}'), 1);
    assert.doesNotMatch(text, /alice|10\.0\.0\.1|XSECRET|SSLv3|ntlm|E_SOMETHING_NEW/);
  });

  test('a relayed command and a closed session update their series without prom-client hashing labels (issue 10)', async () => {
    const m = fresh();
    // The first use of a verb, direction or listener prepares its series; later ones reuse it.
    m.commandRelayed('RETR', 0.01);
    m.commandRelayed('XYZZY', 0.01);
    m.sessionClosed('tls:test', 'quit', 1);
    let labelledCalls = 0;
    for (const name of ['commands_total', 'command_duration_seconds', 'relay_bytes_total', 'session_duration_seconds', 'sessions_closed_total']) {
      const metric = m.registry.getSingleMetric(`popwarden_${name}`) as unknown as Record<string, unknown>;
      for (const method of ['inc', 'observe']) {
        const original = metric[method];
        if (typeof original !== 'function') continue;
        metric[method] = (...args: unknown[]): unknown => {
          labelledCalls += 1;
          return (original as (...a: unknown[]) => unknown).apply(metric, args);
        };
      }
    }
    for (let i = 0; i < 100; i++) {
      m.bytesRelayed('to_backend', 6);
      m.commandRelayed('RETR', 0.004);
      m.commandRelayed('retr', 0.2);
      m.commandRelayed('XYZZY', 40);
      m.bytesRelayed('to_client', 100);
    }
    m.sessionClosed('tls:test', 'quit', 2);
    assert.equal(labelledCalls, 0);
    const text = await m.render();
    assert.equal(sample(text, 'popwarden_commands_total{verb="RETR"}'), 201);
    assert.equal(sample(text, 'popwarden_commands_total{verb="other"}'), 101);
    assert.equal(sample(text, 'popwarden_command_duration_seconds_count{verb="RETR"}'), 201);
    assert.equal(sample(text, 'popwarden_command_duration_seconds_bucket{le="0.005",verb="RETR"}'), 100);
    assert.equal(sample(text, 'popwarden_command_duration_seconds_bucket{le="0.01",verb="RETR"}'), 101);
    assert.equal(sample(text, 'popwarden_command_duration_seconds_bucket{le="30",verb="other"}'), 1);
    assert.equal(sample(text, 'popwarden_command_duration_seconds_bucket{le="+Inf",verb="other"}'), 101);
    assert.equal(sample(text, 'popwarden_relay_bytes_total{direction="to_backend"}'), 600);
    assert.equal(sample(text, 'popwarden_relay_bytes_total{direction="to_client"}'), 10_000);
    assert.equal(sample(text, 'popwarden_sessions_closed_total{listener="tls:test",reason="quit"}'), 2);
    assert.equal(sample(text, 'popwarden_session_duration_seconds_sum{listener="tls:test"}'), 3);
  });

  test('every CloseReason of session/states.ts is its own label value', async () => {
    assert.equal(everyCloseReasonListed, true);
    const m = fresh();
    for (const reason of CLOSE_REASONS) m.sessionClosed('stls:test', reason, 1);
    const text = await m.render();
    for (const reason of CLOSE_REASONS) {
      assert.equal(sample(text, `popwarden_sessions_closed_total{listener="stls:test",reason="${reason}"}`), 1, reason);
    }
  });

  test('relay bytes, rate limits, the store, probes, certificates and reloads', async () => {
    const m = fresh();
    m.bytesRelayed('to_client', 1000);
    m.bytesRelayed('to_backend', 12);
    m.bytesRelayed('to_client', 0);
    m.rateLimitRejection('user_ip');
    m.rateLimitRejection('store_unavailable');
    m.rateLimitStoreUp(false);
    // Still down: the same outage, not a second one.
    m.rateLimitStoreUp(false);
    m.rateLimitStoreError();
    m.backendConnected(0.003);
    m.backendProbe('default', false, 0.5);
    m.stlsUpgrade('stls:test', 'success', 2);
    m.setCertificates([{ listener: 'tls:test', name: 'mail.example.net', notAfter: new Date('2030-01-02T03:04:05Z') }]);
    m.configReload(false);
    let text = await m.render();
    assert.equal(sample(text, 'popwarden_relay_bytes_total{direction="to_client"}'), 1000);
    assert.equal(sample(text, 'popwarden_relay_bytes_total{direction="to_backend"}'), 12);
    assert.equal(sample(text, 'popwarden_ratelimit_rejections_total{limiter="user_ip"}'), 1);
    assert.equal(sample(text, 'popwarden_ratelimit_rejections_total{limiter="store_unavailable"}'), 1);
    assert.equal(sample(text, 'popwarden_ratelimit_store_up{store="redis"}'), 0);
    assert.equal(sample(text, 'popwarden_ratelimit_store_errors_total'), 1);
    assert.equal(sample(text, 'popwarden_ratelimit_store_outages_total'), 1);
    assert.equal(sample(text, 'popwarden_backend_connect_duration_seconds_count'), 1);
    assert.equal(sample(text, 'popwarden_backend_up{backend="default"}'), 0);
    assert.equal(sample(text, 'popwarden_backend_probes_total{backend="default",result="failure"}'), 1);
    assert.equal(sample(text, 'popwarden_backend_probes_total{backend="default",result="success"}'), 0, 'exists from the start');
    assert.equal(sample(text, 'popwarden_stls_upgrades_total{listener="stls:test",result="success"}'), 1);
    assert.equal(sample(text, 'popwarden_stls_discarded_lines_total{listener="stls:test"}'), 2);
    assert.equal(
      sample(text, 'popwarden_tls_certificate_not_after_timestamp_seconds{listener="tls:test",name="mail.example.net"}'),
      Date.parse('2030-01-02T03:04:05Z') / 1000,
    );
    assert.equal(sample(text, 'popwarden_config_last_reload_successful'), 0);
    assert.equal(sample(text, 'popwarden_config_reloads_total{result="failure"}'), 1);
    m.rateLimitStoreUp(true);
    m.backendProbe('default', true, 0.01);
    m.configReload(true);
    text = await m.render();
    assert.equal(sample(text, 'popwarden_ratelimit_store_up{store="redis"}'), 1);
    assert.equal(sample(text, 'popwarden_backend_up{backend="default"}'), 1);
    // Labels are the configured names only; a reload that removes a backend removes its series.
    m.backendProbe('not-configured', true, 0.01);
    m.routeLookup('redis', 'error');
    text = await m.render();
    assert.doesNotMatch(text, /not-configured/);
    assert.equal(sample(text, 'popwarden_backend_probes_total{backend="default",result="success"}'), 1, 'only the configured backend counted');
    assert.equal(sample(text, 'popwarden_route_lookups_total{source="redis",result="error"}'), 1);
    assert.equal(sample(text, 'popwarden_route_lookups_total{source="default",result="miss"}'), 0, 'exists from the start');
    m.setBackends(['north']);
    m.backendProbe('north', false, 0.2);
    text = await m.render();
    assert.equal(sample(text, 'popwarden_backend_up{backend="default"}'), undefined);
    assert.equal(sample(text, 'popwarden_backend_up{backend="north"}'), 0);
    assert.equal(sample(text, 'popwarden_backend_probes_total{backend="north",result="failure"}'), 1);
    assert.equal(sample(text, 'popwarden_backend_probes_total{backend="north",result="success"}'), 0, 'a backend added by a reload starts at 0');
    assert.equal(sample(text, 'popwarden_backend_probes_total{backend="default",result="success"}'), undefined, 'a removed backend takes its series along');
    assert.doesNotMatch(text, /^popwarden_backend_probes_total\{result=/m, 'no series without a backend');
    assert.equal(sample(text, 'popwarden_config_last_reload_successful'), 1);
    assert.ok(Math.abs((sample(text, 'popwarden_config_last_reload_success_timestamp_seconds') ?? 0) - Date.now() / 1000) < 5);
  });

  test('two instances do not share a registry (no "already registered")', async () => {
    const a = fresh(true);
    const b = fresh(true);
    a.commandRelayed('STAT', 0.001);
    assert.equal(sample(await b.render(), 'popwarden_commands_total{verb="STAT"}'), undefined);
    assert.match(await b.render(), /^process_cpu_user_seconds_total /m);
  });

  test('promtool check metrics finds nothing to complain about', { timeout: 20_000 }, async () => {
    const m = fresh(true);
    m.connectionOpened('tls:test', 'implicit');
    m.tlsHandshake('tls:test', 'success', 'TLSv1.3', 0.01);
    m.loginAttempt('user', 'apop', 'success', 0.05);
    m.commandRelayed('RETR', 0.02);
    m.bytesRelayed('to_client', 10);
    m.sessionClosed('tls:test', 'quit', 1);
    m.rateLimitStoreUp(true);
    m.backendProbe('default', true, 0.001);
    m.setCertificates([{ listener: 'tls:test', name: 'localhost', notAfter: new Date() }]);
    const run = spawnSync('promtool', ['check', 'metrics'], { input: await m.render(), encoding: 'utf8', timeout: 15_000 });
    assert.equal(run.error, undefined, `promtool: ${String(run.error)}`);
    assert.equal(run.status, 0, `promtool check metrics:\n${run.stdout}${run.stderr}`);
    assert.equal(`${run.stdout}${run.stderr}`.trim(), '');
  });
});
