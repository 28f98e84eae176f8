/**
 * The matrix's results and their table: one row per server and backend form, one column per
 * client and port. The matrix test prints the table when it ends and, with
 * POPWARDEN_INTEROP_REPORT=DIR (set by `npm run interop`), writes it to DIR/matrix.md and
 * DIR/matrix.json.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Check, MatrixClient, PortKind } from './clients.js';

/** A cell: passed, failed, or failed as the row's known failure says. */
export type CellStatus = 'pass' | 'fail' | 'known-fail';

export interface CellResult {
  readonly status: CellStatus;
  /** The checks that failed, with a one-line reason each. */
  readonly failed: readonly string[];
}

export interface RowResult {
  readonly id: string;
  readonly label: string;
  readonly form: string;
  /** What the server offers: greeting timestamp, CAPA SASL, STLS. */
  offers: string;
  /** What popwarden chose on the backend link (STLS, mechanism). */
  chose: string;
  /** What the server needs so popwarden can keep the password off the link. */
  readonly needs: string;
  readonly knownFailure?: string;
  /** Row-level failure (the server or popwarden did not start). */
  error?: string;
  /** Keyed by `${client.id}/${port}`. */
  readonly cells: Record<string, CellResult>;
}

export const cellKey = (client: MatrixClient, port: PortKind): string => `${client.id}/${port}`;

const SYMBOL: Record<CellStatus, string> = { pass: 'pass', fail: '**FAIL**', 'known-fail': 'known fail' };

const CHECK_NAMES: Record<Check, string> = {
  fetch: 'F',
  'fetch-delete': 'F+D',
  'dele-quit': 'Q',
  'dele-kill': 'K',
};

/** The Markdown table, its legend, what each server needs, and the reasons of known failures. */
export function renderMatrix(rows: readonly RowResult[], clients: readonly MatrixClient[], ports: readonly PortKind[]): string {
  const columns = clients.flatMap((client) => ports.map((port) => ({ key: cellKey(client, port), title: client.label(port) })));
  const header = ['server', 'form', 'offers', 'popwarden chose', ...columns.map((c) => c.title)];
  const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
  for (const row of rows) {
    const cells = columns.map((c) => {
      const cell = row.cells[c.key];
      return cell === undefined ? (row.error === undefined ? 'not run' : '**FAIL**') : SYMBOL[cell.status];
    });
    lines.push(`| ${[row.label, row.form, row.offers, row.chose, ...cells].join(' | ')} |`);
  }
  const checksOf = clients.map((c) => `${c.name} ${c.checks.map((check) => CHECK_NAMES[check]).join(' ')}`).join(', ');
  const notes: string[] = [
    '',
    'Each client runs against popwarden\'s implicit-TLS port (995-style) and its STLS port (110-style), verifying popwarden\'s certificate',
    `(fetchmail with \`--sslcertck\` and the test CA). The checks each client performs: ${checksOf}.`,
    '',
    '- F: every message fetched is byte-identical (sha256) to what the server serves directly: dot-stuffed lines, 8-bit text, a 2,000-character line, 5 MB.',
    '- F+D: the same, and the client deletes what it fetched (fetchmail without `--keep`): the maildrop is empty after.',
    '- Q: DELE 1, DELE 3, QUIT: exactly those two are gone.',
    '- K: DELE 1, DELE 2, then the client is killed (SIGKILL): nothing is gone.',
    '- In every cell of a server that offers APOP, CRAM-MD5 or STLS, the tapped backend link never carries the password in clear, base64 or hex.',
  ];
  notes.push('', '| server | what it needs so popwarden can avoid cleartext on the backend link |', '|---|---|');
  const seen = new Set<string>();
  for (const row of rows) {
    if (seen.has(row.label)) continue;
    seen.add(row.label);
    notes.push(`| ${row.label} | ${row.needs} |`);
  }
  for (const row of rows) {
    if (row.knownFailure !== undefined) notes.push('', `Known failure, ${row.label}: ${row.knownFailure}.`);
    if (row.error !== undefined) notes.push('', `${row.label} (${row.form}) did not run: ${row.error}`);
    for (const [key, cell] of Object.entries(row.cells)) {
      if (cell.status === 'fail') notes.push('', `FAIL ${row.label} (${row.form}), ${key}: ${cell.failed.join('; ')}`);
    }
  }
  return `${lines.join('\n')}\n${notes.join('\n')}\n`;
}

/** Writes matrix.md and matrix.json into `dir`. */
export function writeReport(dir: string, rows: readonly RowResult[], table: string): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'matrix.md'), table);
  fs.writeFileSync(path.join(dir, 'matrix.json'), `${JSON.stringify(rows, null, 2)}\n`);
}
