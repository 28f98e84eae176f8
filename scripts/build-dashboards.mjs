#!/usr/bin/env node
// Writes the Grafana dashboards in dashboards/ from the panel lists below, so that ids, grid
// positions, datasource references and units stay consistent. Edit here, run
// `node scripts/build-dashboards.mjs`, and commit both. test/unit/metrics-dashboards.test.ts
// lints the JSON; test/e2e/prometheus.test.ts runs every query against a real Prometheus.
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const DS = { type: 'prometheus', uid: '${datasource}' };
/** Every query is scoped to the selected job(s) and instance(s). */
const S = 'job=~"$job", instance=~"$instance"';
const R = '$__rate_interval';

function variables() {
  const query = (name, label, q) => ({
    name,
    label,
    type: 'query',
    datasource: DS,
    query: { qryType: 1, query: q, refId: `${name}-var` },
    definition: q,
    refresh: 2,
    includeAll: true,
    multi: true,
    allValue: '.*',
    current: { selected: true, text: ['All'], value: ['$__all'] },
    sort: 1,
  });
  return {
    list: [
      {
        name: 'datasource',
        label: 'Data source',
        type: 'datasource',
        query: 'prometheus',
        current: {},
        hide: 0,
        refresh: 1,
        regex: '',
      },
      query('job', 'Job', 'label_values(popwarden_build_info, job)'),
      query('instance', 'Instance', 'label_values(popwarden_build_info{job=~"$job"}, instance)'),
    ],
  };
}

/** Lays panels out left to right in a 24-wide grid; a row panel starts a new line. */
function layout(items) {
  const panels = [];
  let id = 1;
  let x = 0;
  let y = 0;
  let rowHeight = 0;
  for (const item of items) {
    if (item.type === 'row') {
      if (x > 0) y += rowHeight;
      panels.push({ id: id++, type: 'row', title: item.title, collapsed: false, gridPos: { h: 1, w: 24, x: 0, y }, panels: [] });
      y += 1;
      x = 0;
      rowHeight = 0;
      continue;
    }
    const w = item.w ?? 8;
    const h = item.h ?? 8;
    if (x + w > 24) {
      y += rowHeight;
      x = 0;
      rowHeight = 0;
    }
    panels.push({ id: id++, ...item.panel, gridPos: { h, w, x, y } });
    x += w;
    rowHeight = Math.max(rowHeight, h);
  }
  return panels;
}

const row = (title) => ({ type: 'row', title });

function targets(queries) {
  return queries.map(([expr, legend], i) => ({
    datasource: DS,
    expr,
    legendFormat: legend ?? '__auto',
    range: true,
    refId: String.fromCharCode(65 + i),
  }));
}

function timeseries(title, description, unit, queries, { w, h, stack = false, min = 0, max } = {}) {
  return {
    w,
    h,
    panel: {
      type: 'timeseries',
      title,
      description,
      datasource: DS,
      targets: targets(queries),
      fieldConfig: {
        defaults: {
          unit,
          min,
          ...(max === undefined ? {} : { max }),
          custom: { drawStyle: 'line', lineWidth: 1, fillOpacity: stack ? 30 : 10, showPoints: 'never', stacking: { mode: stack ? 'normal' : 'none', group: 'A' } },
        },
        overrides: [],
      },
      options: { legend: { displayMode: 'list', placement: 'bottom', showLegend: true }, tooltip: { mode: 'multi', sort: 'desc' } },
    },
  };
}

function stat(title, description, unit, expr, { w = 4, h = 4, thresholds, mappings = [], legend } = {}) {
  return {
    w,
    h,
    panel: {
      type: 'stat',
      title,
      description,
      datasource: DS,
      targets: targets([[expr, legend]]).map((t) => ({ ...t, instant: true, range: false })),
      fieldConfig: {
        defaults: {
          unit,
          mappings,
          thresholds: thresholds ?? { mode: 'absolute', steps: [{ color: 'green', value: null }] },
          color: { mode: 'thresholds' },
        },
        overrides: [],
      },
      options: { reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false }, colorMode: 'value', graphMode: 'none', textMode: 'auto', justifyMode: 'auto', orientation: 'auto' },
    },
  };
}

const UP_DOWN = [{ type: 'value', options: { 0: { text: 'DOWN', color: 'red', index: 0 }, 1: { text: 'UP', color: 'green', index: 1 } } }];
const RED_BELOW_1 = { mode: 'absolute', steps: [{ color: 'red', value: null }, { color: 'green', value: 1 }] };
const NONE_DOWN = [{ type: 'value', options: { 0: { text: 'none', color: 'green', index: 0 } } }];
const RED_FROM_1 = { mode: 'absolute', steps: [{ color: 'green', value: null }, { color: 'red', value: 1 }] };
const CERT_DAYS = { mode: 'absolute', steps: [{ color: 'red', value: null }, { color: 'orange', value: 14 }, { color: 'green', value: 30 }] };

function dashboard(uid, title, description, tags, items) {
  return {
    uid,
    title,
    description,
    tags,
    editable: true,
    graphTooltip: 1,
    schemaVersion: 42,
    version: 1,
    time: { from: 'now-6h', to: 'now' },
    refresh: '30s',
    timezone: 'browser',
    fiscalYearStartMonth: 0,
    liveNow: false,
    weekStart: '',
    links: [],
    annotations: {
      list: [
        {
          builtIn: 1,
          datasource: { type: 'grafana', uid: '-- Grafana --' },
          enable: true,
          hide: true,
          iconColor: 'rgba(0, 211, 255, 1)',
          name: 'Annotations & Alerts',
          type: 'dashboard',
        },
      ],
    },
    templating: variables(),
    panels: layout(items),
  };
}

const loginRate = (result) => `sum(rate(popwarden_login_attempts_total{${S}, result=~"${result}"}[${R}]))`;

const overview = dashboard(
  'popwarden-overview',
  'popwarden',
  'popwarden POP3 TLS front-end: traffic, TLS, logins, rate limiting, backend health, relay, certificates.',
  ['popwarden', 'pop3', 'mail'],
  [
    row('Overview'),
    stat('Active connections', 'Client connections open now, all listeners.', 'short', `sum(popwarden_connections_active{${S}})`),
    stat('Login success ratio', 'Successful logins among all login attempts.', 'percentunit', `${loginRate('success')} / ${loginRate('.+')}`, {
      thresholds: { mode: 'absolute', steps: [{ color: 'red', value: null }, { color: 'orange', value: 0.5 }, { color: 'green', value: 0.8 }] },
    }),
    // A count, not min(): with many backends, one down must not read as the whole gateway down.
    stat(
      'Backends down',
      'Backends the periodic probe finds down (connect and a +OK greeting within the connect timeout), each counted once however many instances see it down. Which ones: the Backend up panel below, and the PopwardenBackendDown alert.',
      'none',
      `sum(min by (backend) (popwarden_backend_up{${S}}) == bool 0)`,
      { mappings: NONE_DOWN, thresholds: RED_FROM_1 },
    ),
    stat('Rate-limit store', 'Redis, when configured: DOWN means the limiter runs on its fallback.', 'none', `min(popwarden_ratelimit_store_up{${S}})`, { mappings: UP_DOWN, thresholds: RED_BELOW_1 }),
    stat('Certificate days left', 'Days until the first certificate served expires.', 'd', `min((popwarden_tls_certificate_not_after_timestamp_seconds{${S}} - time()) / 86400)`, { thresholds: CERT_DAYS }),
    stat('Uptime', 'Time since the process started (the youngest instance).', 's', `min(time() - process_start_time_seconds{${S}})`),

    row('Traffic and sessions'),
    timeseries('Connections', 'New TCP connections per second, by listener and TLS mode.', 'cps', [[`sum by (listener, tls) (rate(popwarden_connections_total{${S}}[${R}]))`, '{{listener}} {{tls}}']]),
    timeseries('Active connections', 'Open client connections, by listener.', 'short', [[`sum by (listener) (popwarden_connections_active{${S}})`, '{{listener}}']]),
    timeseries('Sessions closed by reason', 'Why sessions end: quit is normal; timeouts and backend-* point at trouble.', 'cps', [[`sum by (reason) (rate(popwarden_sessions_closed_total{${S}}[${R}]))`, '{{reason}}']], { stack: true }),
    timeseries('Session duration', 'Session lifetime percentiles.', 's', [
      [`histogram_quantile(0.5, sum by (le) (rate(popwarden_session_duration_seconds_bucket{${S}}[${R}])))`, 'p50'],
      [`histogram_quantile(0.95, sum by (le) (rate(popwarden_session_duration_seconds_bucket{${S}}[${R}])))`, 'p95'],
    ]),
    timeseries('Connections refused', 'Turned away at accept: deny list and per-IP bounds.', 'cps', [[`sum by (reason) (rate(popwarden_connections_refused_total{${S}}[${R}]))`, '{{reason}}']], { stack: true }),
    timeseries('Bytes relayed', 'Throughput after login, by direction.', 'Bps', [[`sum by (direction) (rate(popwarden_relay_bytes_total{${S}}[${R}]))`, '{{direction}}']]),

    row('TLS'),
    timeseries('TLS versions', 'Successful handshakes per second, by negotiated version.', 'cps', [[`sum by (version) (rate(popwarden_tls_handshakes_total{${S}, result="success"}[${R}]))`, '{{version}}']], { stack: true }),
    timeseries('TLS handshake failures', 'Failed and timed-out handshakes (implicit TLS and STLS), by listener.', 'cps', [[`sum by (listener, result) (rate(popwarden_tls_handshakes_total{${S}, result!="success"}[${R}]))`, '{{listener}} {{result}}']]),
    timeseries('TLS handshake duration', 'Handshake time percentiles.', 's', [
      [`histogram_quantile(0.5, sum by (le) (rate(popwarden_tls_handshake_duration_seconds_bucket{${S}}[${R}])))`, 'p50'],
      [`histogram_quantile(0.95, sum by (le) (rate(popwarden_tls_handshake_duration_seconds_bucket{${S}}[${R}])))`, 'p95'],
    ]),
    timeseries('STLS upgrades', 'STLS on plaintext listeners, and command lines discarded because they were pipelined behind STLS.', 'cps', [
      [`sum by (result) (rate(popwarden_stls_upgrades_total{${S}}[${R}]))`, 'upgrade {{result}}'],
      [`sum(rate(popwarden_stls_discarded_lines_total{${S}}[${R}]))`, 'discarded lines'],
    ]),

    row('Logins'),
    timeseries('Login results', 'Login attempts per second by result: failure = wrong credentials, blocked = rate limiter, backend_error = backend unreachable.', 'cps', [[`sum by (result) (rate(popwarden_login_attempts_total{${S}}[${R}]))`, '{{result}}']], { stack: true }),
    timeseries('Login failure ratio', 'Failed and blocked logins among all attempts.', 'percentunit', [[`${loginRate('failure|blocked')} / ${loginRate('.+')}`, 'failure ratio']], { max: 1 }),
    timeseries('Login mechanisms', 'Client mechanism and the mechanism popwarden used toward the backend.', 'cps', [[`sum by (client_mechanism, backend_mechanism) (rate(popwarden_login_attempts_total{${S}}[${R}]))`, '{{client_mechanism}} → {{backend_mechanism}}']]),
    timeseries('Login duration', 'From complete credentials to the reply (the failure delay included), p95 by result.', 's', [[`histogram_quantile(0.95, sum by (le, result) (rate(popwarden_login_duration_seconds_bucket{${S}}[${R}])))`, 'p95 {{result}}']]),

    row('Rate limiting'),
    timeseries('Blocked logins by limiter', 'Logins refused before they reached the backend, by the limiter that refused them.', 'cps', [[`sum by (limiter) (rate(popwarden_ratelimit_rejections_total{${S}}[${R}]))`, '{{limiter}}']], { stack: true }),
    timeseries('Rate-limit store (Redis)', '1 = up; 0 = down, the limiter runs on its fallback.', 'bool_yes_no', [[`min by (instance) (popwarden_ratelimit_store_up{${S}})`, '{{instance}}']], { max: 1 }),
    timeseries('Rate-limit store errors', 'Failed calls to the store.', 'cps', [[`sum(rate(popwarden_ratelimit_store_errors_total{${S}}[${R}]))`, 'errors']]),

    row('Backend'),
    timeseries('Backend up', 'The periodic probe, per instance.', 'bool_yes_no', [[`min by (instance, backend) (popwarden_backend_up{${S}})`, '{{instance}} → {{backend}}']], { max: 1 }),
    timeseries('Backend connect latency', 'TCP connect time to the backend for logins, percentiles.', 's', [
      [`histogram_quantile(0.5, sum by (le) (rate(popwarden_backend_connect_duration_seconds_bucket{${S}}[${R}])))`, 'p50'],
      [`histogram_quantile(0.95, sum by (le) (rate(popwarden_backend_connect_duration_seconds_bucket{${S}}[${R}])))`, 'p95'],
      [`histogram_quantile(0.99, sum by (le) (rate(popwarden_backend_connect_duration_seconds_bucket{${S}}[${R}])))`, 'p99'],
      [`max(popwarden_backend_probe_duration_seconds{${S}})`, 'last probe'],
    ]),
    timeseries('Backend errors', 'Backend failures during logins and relaying, by error code.', 'cps', [[`sum by (reason) (rate(popwarden_backend_errors_total{${S}}[${R}]))`, '{{reason}}']], { stack: true }),
    // Only the failing backends get a line: with fifty backends the healthy ones would hide them.
    timeseries('Backend probe failures', 'Failed probes per second, by backend (configured name); only backends that fail are drawn.', 'cps', [[`sum by (backend) (rate(popwarden_backend_probes_total{${S}, result="failure"}[${R}])) > 0`, '{{backend}}']]),

    row('Relay'),
    timeseries('Command mix', 'Relayed commands per second, by verb.', 'cps', [[`sum by (verb) (rate(popwarden_commands_total{${S}}[${R}]))`, '{{verb}}']], { stack: true }),
    timeseries('Command round trip', 'p95 round trip of relayed commands, by verb (RETR includes the whole message).', 's', [[`histogram_quantile(0.95, sum by (le, verb) (rate(popwarden_command_duration_seconds_bucket{${S}}[${R}])))`, '{{verb}}']]),
    timeseries('Config reloads', 'Configuration reloads per second by result; the last one must have succeeded.', 'cps', [
      [`sum by (result) (rate(popwarden_config_reloads_total{${S}}[${R}]))`, '{{result}}'],
    ]),

    row('Certificates and process'),
    timeseries('Certificate days left', 'Days until each served certificate expires, by listener and name.', 'd', [[`(popwarden_tls_certificate_not_after_timestamp_seconds{${S}} - time()) / 86400`, '{{listener}} {{name}}']]),
    timeseries('CPU', 'CPU used by the process, in cores.', 'percentunit', [[`sum by (instance) (rate(process_cpu_seconds_total{${S}}[${R}]))`, '{{instance}}']]),
    timeseries('Memory', 'Resident memory and JS heap in use.', 'bytes', [
      [`sum by (instance) (process_resident_memory_bytes{${S}})`, 'rss {{instance}}'],
      [`sum by (instance) (nodejs_heap_size_used_bytes{${S}})`, 'heap {{instance}}'],
    ]),
  ],
);

const security = dashboard(
  'popwarden-security',
  'popwarden security',
  'Login attacks against popwarden: failures, blocks, rate-limit health, front-door refusals.',
  ['popwarden', 'pop3', 'security'],
  [
    row('Login attacks'),
    stat('Failed logins (1h)', 'Failed logins in the last hour.', 'short', `sum(increase(popwarden_login_attempts_total{${S}, result="failure"}[1h]))`, {
      w: 6,
      thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }, { color: 'orange', value: 100 }, { color: 'red', value: 1000 }] },
    }),
    stat('Blocked logins (1h)', 'Logins refused by the rate limiter in the last hour.', 'short', `sum(increase(popwarden_ratelimit_rejections_total{${S}}[1h]))`, { w: 6 }),
    stat('Failure ratio', 'Failed and blocked logins among all attempts, over the rate interval.', 'percentunit', `${loginRate('failure|blocked')} / ${loginRate('.+')}`, {
      w: 6,
      thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }, { color: 'orange', value: 0.3 }, { color: 'red', value: 0.5 }] },
    }),
    stat('Rate-limit store', 'DOWN: the limiter runs on its fallback; brute force may be slowed less.', 'none', `min(popwarden_ratelimit_store_up{${S}})`, { w: 6, mappings: UP_DOWN, thresholds: RED_BELOW_1 }),
    timeseries('Login results', 'Attempts per second by result.', 'cps', [[`sum by (result) (rate(popwarden_login_attempts_total{${S}}[${R}]))`, '{{result}}']], { w: 12, stack: true }),
    timeseries('Failure ratio', 'Failed and blocked among all attempts; the brute-force alert fires above 50%.', 'percentunit', [[`${loginRate('failure|blocked')} / ${loginRate('.+')}`, 'failure ratio']], { w: 12, max: 1 }),
    timeseries('Blocked by limiter', 'Which limiter stops the guesses: user_ip (one user from one address), ip, user (distributed attack on one account), store_unavailable.', 'cps', [[`sum by (limiter) (rate(popwarden_ratelimit_rejections_total{${S}}[${R}]))`, '{{limiter}}']], { w: 12, stack: true }),
    timeseries('Failures by instance', 'Top instances by failed logins.', 'cps', [[`topk(10, sum by (instance) (rate(popwarden_login_attempts_total{${S}, result="failure"}[${R}])))`, '{{instance}}']], { w: 12 }),

    row('Front door'),
    timeseries('Connections refused', 'Deny list and per-IP bounds.', 'cps', [[`sum by (reason) (rate(popwarden_connections_refused_total{${S}}[${R}]))`, '{{reason}}']]),
    timeseries('Hostile session ends', 'Sessions closed for protocol abuse: HTTP or TLS on the wrong port, overlong lines, invalid commands, too many commands before login, pre-auth timeout.', 'cps', [
      [`sum by (reason) (rate(popwarden_sessions_closed_total{${S}, reason=~"too-many-invalid-commands|too-many-commands-before-login|http-on-pop3-port|tls-on-plaintext-port|line-too-long|pre-auth-timeout"}[${R}]))`, '{{reason}}'],
    ]),
    timeseries('TLS failures and STLS injection', 'Failed handshakes, and lines pipelined behind STLS (discarded; a STARTTLS-injection probe looks like this).', 'cps', [
      [`sum by (result) (rate(popwarden_tls_handshakes_total{${S}, result!="success"}[${R}]))`, 'handshake {{result}}'],
      [`sum(rate(popwarden_stls_discarded_lines_total{${S}}[${R}]))`, 'discarded after STLS'],
    ]),
  ],
);

for (const [file, json] of [['popwarden-overview.json', overview], ['popwarden-security.json', security]]) {
  writeFileSync(join(root, 'dashboards', file), `${JSON.stringify(json, null, 2)}\n`);
  console.log(`wrote dashboards/${file} (${json.panels.length} panels)`);
}
