// Renders the key panels of dashboards/*.json from a live Prometheus into PNG images, without a
// browser: range queries through the HTTP API, a small SVG line chart per panel in Grafana's dark
// colours, and @resvg/resvg-js (a devDependency) to turn the SVG into PNG with the system fonts.
// Used by test/e2e/prometheus.test.ts (RENDER_DOCS=1 writes docs/; otherwise a temp dir).
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Resvg } from '@resvg/resvg-js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The panels worth a picture, per dashboard, by title. */
export const KEY_PANELS = {
  'popwarden-overview.json': [
    'Login results',
    'Login failure ratio',
    'TLS versions',
    'TLS handshake failures',
    'Command mix',
    'Bytes relayed',
    'Backend up',
    'Backend connect latency',
    'Certificate days left',
  ],
  'popwarden-security.json': ['Login results', 'Failure ratio', 'Blocked by limiter', 'Hostile session ends', 'TLS failures and STLS injection', 'Connections refused'],
};

const PALETTE = ['#73bf69', '#f2cc0c', '#5794f2', '#ff780a', '#f2495c', '#b877d9', '#8ab8ff', '#ffb357', '#96d98d', '#ca95e5'];
const BG = '#111217';
const PANEL = '#181b1f';
const TEXT = '#ccccdc';
const GRID = '#2c3235';

const concrete = (expr) => expr.replaceAll('$__rate_interval', '1m').replaceAll('$job', '.*').replaceAll('$instance', '.*');

function escapeXml(text) {
  return String(text).replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]);
}

/** A value in the panel's unit, short enough for an axis label. */
export function formatValue(value, unit) {
  if (!Number.isFinite(value)) return '-';
  const si = (v, suffix) => {
    const abs = Math.abs(v);
    if (abs >= 1e9) return `${+(v / 1e9).toFixed(1)}G${suffix}`;
    if (abs >= 1e6) return `${+(v / 1e6).toFixed(1)}M${suffix}`;
    if (abs >= 1e3) return `${+(v / 1e3).toFixed(1)}k${suffix}`;
    return `${+v.toPrecision(3)}${suffix}`;
  };
  switch (unit) {
    case 'percentunit':
      return `${+(value * 100).toFixed(1)}%`;
    case 'cps':
      return si(value, '/s');
    case 'Bps':
      return si(value, 'B/s');
    case 'bytes':
      return si(value, 'B');
    case 's':
      return value < 1 ? `${+(value * 1000).toPrecision(3)} ms` : `${+value.toPrecision(3)} s`;
    case 'd':
      return `${+value.toFixed(1)} d`;
    case 'bool_yes_no':
      return value >= 1 ? 'Yes' : value <= 0 ? 'No' : '';
    default:
      return si(value, '');
  }
}

function legendName(format, metric) {
  if (!format || format === '__auto') return Object.entries(metric).map(([k, v]) => `${k}=${v}`).join(', ') || 'value';
  return format.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, k) => metric[k] ?? '');
}

async function rangeQuery(url, expr, start, end, step) {
  const params = new URLSearchParams({ query: expr, start: String(start), end: String(end), step: String(step) });
  const res = await fetch(`${url}/api/v1/query_range?${params}`, { signal: AbortSignal.timeout(10_000) });
  const body = await res.json();
  if (body.status !== 'success') throw new Error(`query_range ${expr}: ${body.error}`);
  return body.data.result;
}

/**
 * One panel as an SVG <g> at (x, y), w × h: `series` are { name, points: [[unixSeconds, value]] }
 * and `markers` ({ t: unixSeconds, label }) are drawn as labelled dashed vertical lines.
 */
export function panelSvg(panel, series, x, y, w, h, start, end, markers = []) {
  const unit = panel.fieldConfig?.defaults?.unit ?? 'short';
  const pad = { left: 64, right: 12, top: 34, bottom: 22 + 16 * Math.min(3, Math.ceil(series.length / 2)) };
  const cw = w - pad.left - pad.right;
  const ch = h - pad.top - pad.bottom;
  const values = series.flatMap((s) => s.points.map((p) => p[1])).filter(Number.isFinite);
  let max = Math.max(panel.fieldConfig?.defaults?.max ?? 0, ...values, 0);
  if (max === 0) max = 1;
  const min = Math.min(0, ...values);
  const sx = (t) => x + pad.left + ((t - start) / (end - start)) * cw;
  const sy = (v) => y + pad.top + ch - ((v - min) / (max - min)) * ch;
  const parts = [
    `<rect x="${x}" y="${y}" width="${w}" height="${h}" rx="4" fill="${PANEL}" stroke="${GRID}"/>`,
    `<text x="${x + 10}" y="${y + 21}" font-size="14" font-weight="bold" fill="${TEXT}">${escapeXml(panel.title)}</text>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const v = min + ((max - min) * i) / 4;
    const gy = sy(v);
    parts.push(`<line x1="${x + pad.left}" x2="${x + w - pad.right}" y1="${gy}" y2="${gy}" stroke="${GRID}" stroke-width="1"/>`);
    parts.push(`<text x="${x + pad.left - 6}" y="${gy + 4}" font-size="11" fill="${TEXT}" text-anchor="end">${escapeXml(formatValue(v, unit))}</text>`);
  }
  for (let i = 0; i <= 4; i++) {
    const t = start + ((end - start) * i) / 4;
    const label = new Date(t * 1000).toISOString().slice(11, 19);
    const anchor = i === 0 ? 'start' : i === 4 ? 'end' : 'middle';
    parts.push(`<text x="${sx(t)}" y="${y + pad.top + ch + 15}" font-size="11" fill="${TEXT}" text-anchor="${anchor}">${label}</text>`);
  }
  series.forEach((s, i) => {
    const colour = PALETTE[i % PALETTE.length];
    const segments = [];
    let current = [];
    for (const [t, v] of s.points) {
      if (Number.isFinite(v)) current.push(`${sx(t).toFixed(1)},${sy(v).toFixed(1)}`);
      else if (current.length > 0) {
        segments.push(current);
        current = [];
      }
    }
    if (current.length > 0) segments.push(current);
    for (const seg of segments) {
      if (seg.length === 1) parts.push(`<circle cx="${seg[0].split(',')[0]}" cy="${seg[0].split(',')[1]}" r="2" fill="${colour}"/>`);
      else parts.push(`<polyline points="${seg.join(' ')}" fill="none" stroke="${colour}" stroke-width="2"/>`);
    }
  });
  for (const [i, marker] of markers.entries()) {
    const mx = sx(marker.t).toFixed(1);
    parts.push(`<line x1="${mx}" x2="${mx}" y1="${y + pad.top}" y2="${y + pad.top + ch}" stroke="${TEXT}" stroke-width="1" stroke-dasharray="4 3"/>`);
    if (marker.label !== '') parts.push(`<text x="${Number(mx) + 3}" y="${y + pad.top + 10 + (i % 3) * 11}" font-size="10" fill="${TEXT}">${escapeXml(marker.label)}</text>`);
  }
  series.slice(0, 6).forEach((s, i) => {
    const lx = x + pad.left + (i % 2) * (cw / 2);
    const ly = y + pad.top + ch + 32 + Math.floor(i / 2) * 16;
    parts.push(`<rect x="${lx}" y="${ly - 9}" width="12" height="4" fill="${PALETTE[i % PALETTE.length]}"/>`);
    parts.push(`<text x="${lx + 18}" y="${ly - 3}" font-size="11" fill="${TEXT}">${escapeXml(s.name.slice(0, 42))}</text>`);
  });
  if (series.length === 0) parts.push(`<text x="${x + w / 2}" y="${y + h / 2}" font-size="13" fill="${TEXT}" text-anchor="middle">No data</text>`);
  return `<g>${parts.join('')}</g>`;
}

/** Panels (SVG groups) on one dark page of width × height with a title and a note, as PNG bytes. */
export function pagePng(title, note, groups, width, height, gap = 12) {
  const svg = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="DejaVu Sans, sans-serif">`,
    `<rect width="100%" height="100%" fill="${BG}"/>`,
    `<text x="${gap}" y="30" font-size="18" font-weight="bold" fill="${TEXT}">${escapeXml(title)}</text>`,
    `<text x="${width - gap}" y="30" font-size="12" fill="${TEXT}" text-anchor="end">${escapeXml(note)}</text>`,
    ...groups,
    '</svg>',
  ].join('\n');
  return new Resvg(svg, { font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' }, background: BG }).render().asPng();
}

/**
 * Renders KEY_PANELS of each dashboard from the Prometheus at `url` over the last `rangeSeconds`
 * into one PNG per dashboard (a grid of panels) in `outDir`; returns the files written.
 */
export async function renderPanels(url, outDir, { rangeSeconds = 150, step = 2 } = {}) {
  mkdirSync(outDir, { recursive: true });
  const end = Math.floor(Date.now() / 1000);
  const start = end - rangeSeconds;
  const written = [];
  for (const [file, titles] of Object.entries(KEY_PANELS)) {
    const dashboard = JSON.parse(readFileSync(join(ROOT, 'dashboards', file), 'utf8'));
    const panels = titles.map((t) => {
      const panel = dashboard.panels.find((p) => p.title === t && p.type === 'timeseries');
      if (panel === undefined) throw new Error(`${file}: no timeseries panel "${t}"`);
      return panel;
    });
    const cols = 3;
    const w = 460;
    const h = 270;
    const gap = 12;
    const header = 44;
    const rows = Math.ceil(panels.length / cols);
    const width = cols * w + (cols + 1) * gap;
    const height = header + rows * h + (rows + 1) * gap;
    const groups = [];
    for (const [i, panel] of panels.entries()) {
      const series = [];
      for (const target of panel.targets) {
        for (const r of await rangeQuery(url, concrete(target.expr), start, end, step)) {
          series.push({ name: legendName(target.legendFormat, r.metric), points: r.values.map(([t, v]) => [t, Number(v)]) });
        }
      }
      const px = gap + (i % cols) * (w + gap);
      const py = header + gap + Math.floor(i / cols) * (h + gap);
      groups.push(panelSvg(panel, series, px, py, w, h, start, end));
    }
    const png = pagePng(dashboard.title, `live Prometheus data, ${new Date(start * 1000).toISOString().slice(0, 19)}Z + ${rangeSeconds}s`, groups, width, height);
    const out = join(outDir, file.replace(/\.json$/, '.png'));
    writeFileSync(out, png);
    written.push(out);
  }
  return written;
}
