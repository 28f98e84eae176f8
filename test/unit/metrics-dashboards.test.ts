/**
 * Lints dashboards/ and the Prometheus rules without Grafana: the dashboard-linter rules we care
 * about (datasource variable, job/instance variables, $__rate_interval, units, unique ids), and
 * that every metric a dashboard or rule names is one popwarden exports. Then promtool: the rules
 * pass `check rules --lint=all` and their unit tests fire and resolve every alert.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { createPrometheusMetrics } from '../../src/observability/prometheus.js';
import { CLOSE_REASONS, PROTOCOL_ERRORS } from '../../src/session/close-reasons.js';
import { BACKEND_ERROR_CODES } from '../../src/errors.js';
import { LIMITER_NAMES_ALL } from '../../src/auth/limiter-names.js';
import { CONNECTION_REFUSALS, LOGIN_RESULTS, ROUTE_LOOKUP_RESULTS, ROUTE_SOURCE_NAMES, TLS_HANDSHAKE_RESULTS } from '../../src/observability/metrics.js';
import { scratchDir } from '../harness/scratch.js';

const ROOT = join(import.meta.dirname, '..', '..');
const DASHBOARDS = join(ROOT, 'dashboards');
const RULES = join(DASHBOARDS, 'prometheus');

interface Target {
  expr: string;
  datasource?: { type: string; uid: string };
  refId: string;
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  targets?: Target[];
  fieldConfig?: { defaults?: { unit?: string } };
  gridPos: { h: number; w: number; x: number; y: number };
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  templating: { list: { name: string; type: string; query: unknown; datasource?: { uid: string } }[] };
  panels: Panel[];
}
interface Rule {
  record?: string;
  alert?: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export function loadDashboards(): { file: string; json: Dashboard; text: string }[] {
  return readdirSync(DASHBOARDS)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((file) => {
      const text = readFileSync(join(DASHBOARDS, file), 'utf8');
      return { file, text, json: JSON.parse(text) as Dashboard };
    });
}

/** The rule files (every .yml in dashboards/prometheus/ but the scrape example). */
function ruleFiles(): string[] {
  return readdirSync(RULES)
    .filter((f) => f.endsWith('.yml') && f !== 'scrape-example.yml')
    .sort();
}

export function loadRules(): Rule[] {
  return ruleFiles()
    .flatMap((f) => (parse(readFileSync(join(RULES, f), 'utf8')) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules));
}

/** Metric names (not recording-rule names, which have colons) that a PromQL expression reads. */
function metricNames(expr: string): string[] {
  const withoutStrings = expr.replace(/"[^"]*"/g, '""');
  const tokens = withoutStrings.match(/[A-Za-z_:][A-Za-z0-9_:]*/g) ?? [];
  return tokens.filter((t) => /^(popwarden_|process_|nodejs_)/.test(t));
}

async function exportedNames(): Promise<Set<string>> {
  const text = await createPrometheusMetrics({ version: 'lint', listeners: [] }).render();
  const names = new Set<string>();
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(name!);
    if (type === 'histogram' || type === 'summary') for (const s of ['_bucket', '_sum', '_count']) names.add(`${name!}${s}`);
  }
  return names;
}

const dashboards = loadDashboards();

describe('Grafana dashboards', () => {
  test('there are two: the overview and the security dashboard', () => {
    assert.deepEqual(dashboards.map((d) => d.json.uid), ['popwarden-overview', 'popwarden-security']);
  });

  for (const { file, json, text } of dashboards) {
    describe(file, () => {
      test('top level: stable short uid, title, current schema', () => {
        assert.ok(json.uid.length <= 40);
        assert.ok(json.title.length > 0);
        assert.ok(json.schemaVersion >= 41, `schemaVersion ${json.schemaVersion}`);
      });

      test('a datasource variable, and job and instance query variables that use it', () => {
        const vars = new Map(json.templating.list.map((v) => [v.name, v]));
        assert.deepEqual(
          { type: vars.get('datasource')?.type, query: vars.get('datasource')?.query },
          { type: 'datasource', query: 'prometheus' },
        );
        for (const name of ['job', 'instance']) {
          assert.equal(vars.get(name)?.type, 'query', name);
          assert.equal(vars.get(name)?.datasource?.uid, '${datasource}', name);
        }
      });

      test('no ${DS_...} import placeholders and no __inputs', () => {
        assert.doesNotMatch(text, /\$\{DS_/);
        assert.doesNotMatch(text, /__inputs/);
      });

      test('panel ids are unique and panels do not overlap', () => {
        const ids = json.panels.map((p) => p.id);
        assert.equal(new Set(ids).size, ids.length);
        const cells = new Set<string>();
        for (const p of json.panels) {
          assert.ok(p.gridPos.x + p.gridPos.w <= 24, p.title);
          for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++) {
            for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++) {
              assert.ok(!cells.has(`${x},${y}`), `${p.title} overlaps at ${x},${y}`);
              cells.add(`${x},${y}`);
            }
          }
        }
      });

      const dataPanels = json.panels.filter((p) => p.type !== 'row');
      test('every panel and target uses the datasource variable, and every panel has a unit', () => {
        assert.ok(dataPanels.length > 0);
        for (const p of dataPanels) {
          assert.deepEqual(p.datasource, { type: 'prometheus', uid: '${datasource}' }, p.title);
          assert.ok((p.targets ?? []).length > 0, `${p.title}: no query`);
          for (const t of p.targets ?? []) assert.deepEqual(t.datasource, { type: 'prometheus', uid: '${datasource}' }, p.title);
          const unit = p.fieldConfig?.defaults?.unit;
          assert.ok(typeof unit === 'string' && unit.length > 0, `${p.title}: no unit`);
        }
      });

      test('every query is scoped by $job and $instance, and every rate() uses $__rate_interval', () => {
        for (const p of dataPanels) {
          for (const t of p.targets ?? []) {
            for (const selector of t.expr.match(/(popwarden_|process_|nodejs_)[a-z_]+\{[^}]*\}/g) ?? []) {
              assert.match(selector, /job=~"\$job", instance=~"\$instance"/, `${p.title}: ${selector}`);
            }
            for (const range of t.expr.match(/\brate\([^[]*\[[^\]]*\]/g) ?? []) {
              assert.match(range, /\[\$__rate_interval\]$/, `${p.title}: ${range}`);
            }
          }
        }
      });
    });
  }
});

describe('metric names', () => {
  test('every metric a dashboard or rule names is exported by popwarden (or by prom-client defaults)', async () => {
    const exported = await exportedNames();
    const rules = loadRules();
    const recorded = new Set(rules.flatMap((r) => (r.record === undefined ? [] : [r.record])));
    const named = new Map<string, string>();
    for (const { file, json } of dashboards) {
      for (const p of json.panels) for (const t of p.targets ?? []) for (const m of metricNames(t.expr)) named.set(m, `${file}: ${p.title}`);
    }
    for (const r of rules) for (const m of metricNames(r.expr)) named.set(m, r.record ?? r.alert ?? '?');
    assert.ok(named.size > 20);
    for (const [metric, where] of named) assert.ok(exported.has(metric), `${where} reads ${metric}, which popwarden does not export`);
    // Recording rules that alerts use exist.
    for (const r of rules) {
      for (const used of r.expr.match(/\b[a-z_]+:[a-z_]+:[a-z0-9_]+\b/g) ?? []) assert.ok(recorded.has(used), `${r.alert ?? r.record} uses ${used}`);
    }
  });
});

describe('label values', () => {
  const closeSelectors = (): { where: string; reasons: string[] }[] =>
    dashboards.flatMap(({ file, json }) =>
      json.panels.flatMap((p) =>
        (p.targets ?? []).flatMap((t) =>
          [...t.expr.matchAll(/popwarden_sessions_closed_total\{[^}]*reason=~"([^"]*)"/g)].map((m) => ({ where: `${file}: ${p.title}`, reasons: m[1]!.split('|') })),
        ),
      ),
    );

  test('every session close reason a dashboard selects is one popwarden gives', () => {
    const known = new Set<string>(CLOSE_REASONS);
    assert.ok(closeSelectors().length > 0);
    for (const { where, reasons } of closeSelectors()) for (const reason of reasons) assert.ok(known.has(reason), `${where}: ${reason}`);
  });

  test("the README's Logs section lists every close reason (the reason label of popwarden_sessions_closed_total points there)", () => {
    const logs = readFileSync(join(ROOT, 'README.md'), 'utf8').split(/^## Logs$/m)[1]!.split(/^## /m)[0]!;
    for (const reason of CLOSE_REASONS) assert.ok(logs.includes(`\`${reason}\``), reason);
  });

  test("the README's metrics table names every value each bounded label takes", () => {
    const table = readFileSync(join(ROOT, 'README.md'), 'utf8').split(/^### Metrics$/m)[1]!.split(/^### /m)[0]!;
    const row = (metric: string): string => table.split('\n').find((line) => line.startsWith(`| \`${metric}\` |`)) ?? '';
    const values: [string, readonly string[]][] = [
      ['popwarden_backend_errors_total', BACKEND_ERROR_CODES],
      ['popwarden_connections_refused_total', CONNECTION_REFUSALS],
      ['popwarden_login_attempts_total', LOGIN_RESULTS],
      ['popwarden_tls_handshakes_total', TLS_HANDSHAKE_RESULTS],
      ['popwarden_ratelimit_rejections_total', LIMITER_NAMES_ALL],
      ['popwarden_route_lookups_total', [...ROUTE_SOURCE_NAMES, ...ROUTE_LOOKUP_RESULTS]],
    ];
    for (const [metric, allowed] of values) for (const value of allowed) assert.ok(row(metric).includes(`\`${value}\``), `${metric}: ${value}`);
  });

  test('the hostile session ends of the security dashboard include every protocol error', () => {
    const [hostile] = closeSelectors().filter((s) => s.where.endsWith('Hostile session ends'));
    assert.ok(hostile !== undefined);
    for (const reason of PROTOCOL_ERRORS) assert.ok(hostile.reasons.includes(reason), reason);
  });
});

describe('Prometheus rules', () => {
  const rules = loadRules();
  const alerts = rules.filter((r) => r.alert !== undefined);
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');

  test('the alerts (issue 5, and every backend down), each with severity, summary, description and a runbook in the README', () => {
    assert.deepEqual(alerts.map((a) => a.alert).sort(), [
      'PopwardenAllBackendsDown',
      'PopwardenBackendDown',
      'PopwardenCertificateExpiringSoon',
      'PopwardenConfigReloadFailed',
      'PopwardenInstanceDown',
      'PopwardenLoginFailureSpike',
      'PopwardenRateLimiterDegraded',
      'PopwardenTLSHandshakeErrors',
    ]);
    for (const a of alerts) {
      assert.match(a.labels?.['severity'] ?? '', /^(critical|warning)$/, a.alert);
      assert.ok((a.annotations?.['summary'] ?? '').length > 0, a.alert);
      assert.ok((a.annotations?.['description'] ?? '').length > 0, a.alert);
      const anchor = `README.md#${a.alert!.toLowerCase()}`;
      assert.equal(a.annotations?.['runbook_url'], anchor);
      assert.ok(new RegExp(`^#### ${a.alert!}$`, 'm').test(readme), `README has no runbook heading for ${a.alert!}`);
    }
  });

  test('promtool check rules --lint=all --lint-fatal', { timeout: 30_000 }, () => {
    const files = ruleFiles().map((f) => join(RULES, f));
    assert.equal(files.length, 2);
    const run = spawnSync('promtool', ['check', 'rules', '--lint=all', '--lint-fatal', ...files], { encoding: 'utf8', timeout: 25_000 });
    assert.equal(run.error, undefined, String(run.error));
    assert.equal(run.status, 0, `${run.stdout}${run.stderr}`);
  });

  test('the scrape example is a valid Prometheus config that loads both rule files', { timeout: 30_000 }, () => {
    const run = spawnSync('promtool', ['check', 'config', join(RULES, 'scrape-example.yml')], { encoding: 'utf8', timeout: 25_000 });
    assert.equal(run.status, 0, `${run.stdout}${run.stderr}`);
    assert.match(run.stdout, /SUCCESS: 2 rule files found/);
  });

  test('the Grafana provisioning examples have the provider and data source shape', () => {
    const provider = parse(readFileSync(join(DASHBOARDS, 'provisioning', 'dashboards', 'popwarden.yaml'), 'utf8')) as {
      apiVersion: number;
      providers: { type: string; options: { path: string } }[];
    };
    assert.equal(provider.apiVersion, 1);
    assert.equal(provider.providers[0]?.type, 'file');
    assert.ok(provider.providers[0]?.options.path);
    const ds = parse(readFileSync(join(DASHBOARDS, 'provisioning', 'datasources', 'prometheus.yaml'), 'utf8')) as {
      datasources: { type: string }[];
    };
    assert.equal(ds.datasources[0]?.type, 'prometheus');
  });

  test("the overview's Backend tile counts the backends down (any instance's probe): one of many down reads 1, not the whole gateway red", { timeout: 30_000 }, () => {
    const overview = dashboards.find((d) => d.file === 'popwarden-overview.json')!.json;
    const tiles = overview.panels.filter((p) => p.type === 'stat' && p.targets?.some((t) => t.expr.includes('popwarden_backend_up')));
    const [tile] = tiles;
    assert.ok(tiles.length === 1 && tile?.targets?.length === 1, 'one stat tile of the backends, with one query');
    const expr = tile.targets[0]!.expr.replaceAll('$job', '.*').replaceAll('$instance', '.*');
    // Two instances probe three backends; mail2 goes down for one instance, then for both.
    const up = (instance: string, backend: string, values: string) => ({ series: `popwarden_backend_up{job="popwarden", instance="${instance}", backend="${backend}"}`, values });
    const at = (minutes: number, down: number) => ({ expr, eval_time: `${minutes}m`, exp_samples: [{ labels: '{}', value: down }] });
    const file = join(scratchDir('popwarden-tile'), 'backend-tile.test.yml');
    writeFileSync(
      file,
      stringify({
        rule_files: [],
        evaluation_interval: '1m',
        tests: [
          {
            interval: '1m',
            input_series: [
              up('a:9595', 'mail1', '1 1 1'), up('b:9595', 'mail1', '1 1 1'),
              up('a:9595', 'mail2', '1 0 0'), up('b:9595', 'mail2', '1 1 0'),
              up('a:9595', 'mail3', '1 1 0'), up('b:9595', 'mail3', '1 1 1'),
            ],
            promql_expr_test: [at(0, 0), at(1, 1), at(2, 2)],
          },
        ],
      }),
    );
    const run = spawnSync('promtool', ['test', 'rules', file], { encoding: 'utf8', timeout: 25_000 });
    assert.equal(run.error, undefined, String(run.error));
    assert.equal(run.status, 0, `${expr}\n${run.stdout}${run.stderr}`);
  });

  test('promtool test rules: every alert fires and resolves', { timeout: 60_000 }, () => {
    const dir = join(RULES, 'tests');
    const files = readdirSync(dir).filter((f) => f.endsWith('.yml')).map((f) => join(dir, f));
    // Each alert must appear with an expected firing alert and with an empty (resolved) expectation.
    const cases = files.flatMap((f) =>
      (parse(readFileSync(f, 'utf8')) as { tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[] }).tests.flatMap(
        (t) => t.alert_rule_test ?? [],
      ),
    );
    for (const a of alerts) {
      assert.ok(cases.some((c) => c.alertname === a.alert && c.exp_alerts.length > 0), `${a.alert!} never fires in a test`);
      assert.ok(cases.some((c) => c.alertname === a.alert && c.exp_alerts.length === 0), `${a.alert!} never resolves in a test`);
    }
    const run = spawnSync('promtool', ['test', 'rules', ...files], { encoding: 'utf8', timeout: 55_000 });
    assert.equal(run.error, undefined, String(run.error));
    assert.equal(run.status, 0, `${run.stdout}${run.stderr}`);
    assert.match(run.stdout, /SUCCESS/);
  });
});
