/**
 * The soak's chart: one panel per series over the whole run (x: time since the start), the load,
 * the SIGHUP and the Redis restart marked on each, drawn by the dashboards' own panel renderer
 * (scripts/render-panels.mjs) and rendered to PNG. Run on its own it draws a chart again from a
 * run's samples: `node --import tsx bench/endurance-chart.ts bench/results/soak.json docs/soak.png`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { pagePng, panelSvg, type PanelSeries } from '../scripts/render-panels.mjs';
import type { Event, Sample } from './endurance-report.js';

const series = (name: string, samples: readonly Sample[], of: (s: Sample) => number | null): PanelSeries => ({
  name,
  points: samples.map((s) => [s.t, of(s) ?? Number.NaN] as const),
});

/** popwarden's share of one core between two samples. */
const cpuShare = (samples: readonly Sample[]): PanelSeries => ({
  name: 'popwarden CPU (1 core = 100%)',
  points: samples.slice(1).map((s, i) => [s.t, (s.cpuSeconds - samples[i]!.cpuSeconds) / (s.t - samples[i]!.t)] as const),
});

export function renderChart(samples: readonly Sample[], events: readonly Event[]): Buffer {
  const panels: { title: string; unit: string; lines: PanelSeries[] }[] = [
    { title: 'Memory', unit: 'bytes', lines: [series('RSS', samples, (s) => s.rssBytes), series('heap total', samples, (s) => s.heapTotalBytes), series('heap used', samples, (s) => s.heapUsedBytes)] },
    { title: 'Sessions open', unit: 'short', lines: [series('popwarden connections_active', samples, (s) => s.sessions), series('clients in a session', samples, (s) => s.clientSessionsOpen)] },
    { title: 'Open descriptors', unit: 'short', lines: [series('process_open_fds', samples, (s) => s.openFds)] },
    { title: 'Event-loop delay (per 10 s)', unit: 's', lines: [series('p99', samples, (s) => s.eventLoopP99Seconds), series('max', samples, (s) => s.eventLoopMaxSeconds)] },
    { title: 'CPU', unit: 'percentunit', lines: [cpuShare(samples)] },
    { title: 'Machine load average (1 min, shared)', unit: 'short', lines: [series('load1', samples, (s) => s.load1)] },
  ];
  // Redis is down for seconds only: one label for both lines.
  const label = (what: Event['what']): string => (what === 'Redis stopped' ? 'Redis restart' : what === 'Redis started' ? '' : what);
  const snapshots = samples.filter((s) => s.fullGc).map((s) => ({ t: s.t, label: 'full GC' }));
  // In time order, so that neighbouring labels fall on different rows.
  const markers = [...events.map((e) => ({ t: e.t, label: label(e.what) })), ...snapshots].sort((a, b) => a.t - b.t);
  const [cols, w, h, gap, header] = [2, 640, 280, 12, 44];
  const rows = Math.ceil(panels.length / cols);
  const width = cols * w + (cols + 1) * gap;
  const height = header + rows * h + (rows + 1) * gap;
  const end = samples.at(-1)?.t ?? 1;
  const groups = panels.map((p, i) =>
    panelSvg({ title: p.title, fieldConfig: { defaults: { unit: p.unit } } }, p.lines, gap + (i % cols) * (w + gap), header + gap + Math.floor(i / cols) * (h + gap), w, h, 0, end, markers),
  );
  return pagePng('popwarden soak', 'x: time since the start (h:m:s); every point a 10 s sample of /metrics', groups, width, height);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [from = 'bench/results/soak.json', to = 'docs/soak.png'] = process.argv.slice(2);
  const run = JSON.parse(readFileSync(from, 'utf8')) as { samples: Sample[]; events: Event[] };
  writeFileSync(to, renderChart(run.samples, run.events));
}
