/**
 * The comparison's results and their Markdown: one row per measure, one value per target and
 * repetition; the table shows each target's median with min-max and popwarden's median as a
 * ratio of each peer's. The issue-10 targets are judged from the same medians.
 */
import { TARGET_NAMES, type TargetName } from './targets.js';

/** Whether more is better (rates) or less is (latencies, costs). */
export type Better = 'higher' | 'lower';

export interface Row {
  readonly id: string;
  readonly workload: string;
  readonly measure: string;
  readonly better: Better;
  readonly digits: number;
  readonly values: Map<TargetName, number[]>;
}

export const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

/** The p-th percentile by nearest rank. */
export const percentile = (xs: readonly number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
};

/** What each target's column is headed. */
const HEADINGS: Readonly<Record<TargetName, string>> = { popwarden: 'popwarden', stunnel: 'stunnel', nginx: 'nginx', node: 'bare node:tls relay', direct: 'direct' };
/** The peers popwarden's medians are divided by, when they were measured. */
const RATIO_PEERS: readonly TargetName[] = ['stunnel', 'nginx', 'node'];

export class Results {
  readonly rows: Row[] = [];
  readonly notes: string[] = [];
  /** CPU µs of \`openssl s_server\` per full TLS 1.3 handshake, one value per repetition. */
  readonly openSslHandshakeUs: number[] = [];

  /** Records one repetition's value of measure `id` for `target`. */
  add(id: string, workload: string, measure: string, better: Better, digits: number, target: TargetName, value: number): void {
    let row = this.rows.find((r) => r.id === id);
    if (row === undefined) {
      row = { id, workload, measure, better, digits, values: new Map() };
      this.rows.push(row);
    }
    const list = row.values.get(target) ?? [];
    list.push(value);
    row.values.set(target, list);
  }

  /** The median of measure `id` for `target`, if it was measured. */
  median(id: string, target: TargetName): number | undefined {
    const values = this.rows.find((r) => r.id === id)?.values.get(target);
    return values === undefined || values.length === 0 ? undefined : median(values);
  }

  /** Every row, each target's median with min-max; ratios of medians. */
  table(): string {
    return this.#render(this.rows, true);
  }

  /** The rows the README carries, medians only. */
  summary(): string {
    return this.#render(SUMMARY_ROWS.map((id) => this.rows.find((r) => r.id === id)).filter((r): r is Row => r !== undefined), false);
  }

  /** The targets with a value in any row, in the report's column order. */
  measured(): TargetName[] {
    return TARGET_NAMES.filter((name) => this.rows.some((row) => (row.values.get(name)?.length ?? 0) > 0));
  }

  #render(rows: readonly Row[], ranges: boolean): string {
    const columns = this.measured();
    const peers = RATIO_PEERS.filter((peer) => columns.includes(peer));
    const format = (x: number, digits: number): string => x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
    const cell = (row: Row, target: TargetName): string => {
      const values = row.values.get(target);
      if (values === undefined || values.length === 0) return '';
      const mid = format(median(values), row.digits);
      if (!ranges || values.length === 1) return mid;
      return `${mid} <sub>${format(Math.min(...values), row.digits)}–${format(Math.max(...values), row.digits)}</sub>`;
    };
    const ratio = (row: Row, peer: TargetName): string => {
      const ours = this.median(row.id, 'popwarden');
      const theirs = this.median(row.id, peer);
      if (ours === undefined || theirs === undefined || theirs === 0) return '';
      return `${(ours / theirs).toFixed(2)}`;
    };
    const lines = [
      `| workload | measure (↑ more is better, ↓ less is) | ${columns.map((t) => HEADINGS[t]).join(' | ')} | ${peers.map((peer) => `popwarden / ${HEADINGS[peer]}`).join(' | ')} |`,
      `|---|---|${[...columns, ...peers].map(() => '--:').join('|')}|`,
    ];
    let previous = '';
    for (const row of rows) {
      const workload = row.workload === previous ? '' : row.workload;
      previous = row.workload;
      const arrow = row.better === 'higher' ? '↑' : '↓';
      lines.push(`| ${workload} | ${row.measure} ${arrow} | ${columns.map((t) => cell(row, t)).join(' | ')} | ${peers.map((peer) => ratio(row, peer)).join(' | ')} |`);
    }
    return lines.join('\n');
  }
}

/** The measures the README's summary shows: each workload's rate and its cost. */
const SUMMARY_ROWS = ['e.seconds', 'e.rate8', 'e.cpu1', 'a.rate', 'a.cpu', 'b.rate8', 'b.rate32', 'b.cpu32', 'b.helper32', 'c.p50.1', 'c.p99.1', 'c.cpu.1', 'd.kib1000', 'd.kib5000'];

/** One issue-10 target: popwarden's median against a bound taken from the same run. */
export interface Goal {
  readonly label: string;
  readonly id: string;
  /** The bound popwarden must reach, from the run (a peer's median, or a fixed number). */
  readonly bound: (results: Results) => number | undefined;
  readonly boundLabel: string;
}

/** The targets issue 10 sets, each as popwarden's median against a bound of the same run. */
export const GOALS: readonly Goal[] = [
  ...(['e.rate1', 'e.rate8'] as const).map((id) => stunnelGoal(id, id === 'e.rate1' ? '(e) messages/s, 1 session' : '(e) messages/s, 8 sessions')),
  stunnelGoal('e.cpu1', '(e) CPU per session, 1 session'),
  stunnelGoal('e.cpu8', '(e) CPU per session, 8 sessions'),
  stunnelGoal('a.rate', '(a) MB/s'),
  stunnelGoal('a.cpu', '(a) CPU per GB'),
  ...[8, 32].flatMap((w) => [
    stunnelGoal(`b.rate${w}`, `(b) logins/s, ${w} workers`),
    peerGoal(`b.rate${w}`, `(b) logins/s, ${w} workers`, 'nginx'),
    { label: `(b) CPU per login, ${w} workers`, id: `b.cpu${w}`, bound: (r: Results) => scaled(r.openSslHandshakeUs.length === 0 ? undefined : median(r.openSslHandshakeUs), 1.5), boundLabel: '1.5 × OpenSSL s_server' },
  ]),
  ...[1, 20].flatMap((s) => [
    stunnelGoal(`c.p50.${s}`, `(c) NOOP p50, ${s} session${s > 1 ? 's' : ''}`),
    stunnelGoal(`c.p99.${s}`, `(c) NOOP p99, ${s} session${s > 1 ? 's' : ''}`),
    stunnelGoal(`c.cpu.${s}`, `(c) CPU per NOOP, ${s} session${s > 1 ? 's' : ''}`),
  ]),
  fixedGoal('d.kib1000', '(d) KiB per idle session at 1,000', 40),
  fixedGoal('d.kib5000', '(d) KiB per idle session at 5,000', 40),
  fixedGoal('d.failed', '(d) failed idle sessions', 0),
];

function scaled(x: number | undefined, factor: number): number | undefined {
  return x === undefined ? undefined : x * factor;
}

function peerGoal(id: string, label: string, peer: TargetName): Goal {
  return { label, id, bound: (r) => r.median(id, peer), boundLabel: peer };
}

function stunnelGoal(id: string, label: string): Goal {
  return peerGoal(id, label, 'stunnel');
}

function fixedGoal(id: string, label: string, bound: number): Goal {
  return { label, id, bound: () => bound, boundLabel: '(fixed)' };
}

/**
 * The targets as a Markdown table: met, or missed and by how much (as a factor of the bound).
 * When the bare node:tls relay ran too, the same verdict for it: a bound Node's floor misses
 * is one no code in popwarden can reach on this machine.
 */
export function goalTable(results: Results): string {
  const floor = results.measured().includes('node');
  const lines = floor
    ? ['| target | popwarden | bound | verdict | bare node:tls relay | its verdict |', '|---|--:|--:|---|--:|---|']
    : ['| target | popwarden | bound | verdict |', '|---|--:|--:|---|'];
  for (const goal of GOALS) {
    const row = results.rows.find((r) => r.id === goal.id);
    const ours = results.median(goal.id, 'popwarden');
    const bound = goal.bound(results);
    if (row === undefined || ours === undefined || bound === undefined) continue;
    const verdict = (value: number): string => {
      const met = row.better === 'higher' ? value >= bound : value <= bound;
      return met ? 'met' : `**missed**${bound === 0 ? '' : ` (${(value / bound).toFixed(2)}× the bound)`}`;
    };
    const digits = row.digits;
    const cells = [goal.label, ours.toFixed(digits), `${bound.toFixed(digits)} ${goal.boundLabel}`, verdict(ours)];
    const node = results.median(goal.id, 'node');
    if (floor) cells.push(node === undefined ? '' : node.toFixed(digits), node === undefined ? '' : verdict(node));
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}
