/**
 * The client dimension of the interop matrix: each real client, the checks it can perform, and
 * how it performs them against one of popwarden's two ports. A check that a client cannot do is
 * simply not in its list (curl fetches, it cannot DELE and then be killed); poplib and
 * openssl s_client do the DELE checks, so every server, form and port gets them.
 */
import {
  deleteWithPoplib,
  fetchWithCurl,
  fetchWithFetchmail,
  fetchWithOpenssl,
  fetchWithPoplib,
  opensslScript,
  type ClientOptions,
  type ClientResult,
} from '../harness/clients.js';

/** popwarden's two ports: 995-style implicit TLS, and 110-style with STLS. */
export type PortKind = 'implicit' | 'stls';
export const PORTS: readonly PortKind[] = ['implicit', 'stls'];

/**
 * `fetch`: every message fetched, each byte-identical to what the server serves directly.
 * `fetch-delete`: the same, and the client deletes what it fetched: the maildrop is empty after.
 * `dele-quit`: DELE 1 and DELE 3, then QUIT: exactly those two are gone.
 * `dele-kill`: DELE 1 and DELE 2, then the client is killed: nothing is gone.
 */
export type Check = 'fetch' | 'fetch-delete' | 'dele-quit' | 'dele-kill';

/** What a deleting run reported: every DELE answered +OK and the client ended as asked. */
export interface DeleteRun {
  readonly ok: boolean;
  readonly detail: string;
}

export interface MatrixClient {
  /** Stable key (report columns). */
  readonly id: string;
  /** The client and how it is run, for the legend. */
  readonly name: string;
  /** What the client is, per port, for the table header. */
  label(port: PortKind): string;
  readonly checks: readonly Check[];
  /** Fetches every message (`fetch`, `fetch-delete`). */
  fetch?(o: ClientOptions): Promise<ClientResult>;
  /** DELE `numbers`, then QUIT or get killed (`dele-quit`, `dele-kill`). */
  delete?(o: ClientOptions, numbers: readonly number[], end: 'quit' | 'kill'): Promise<DeleteRun>;
}

const why = (r: ClientResult): string => `exit ${r.exitCode}\n${r.stderr.slice(-1_500)}\n${r.transcript.slice(-1_500)}`;

/** DELE through `openssl s_client`, USER/PASS login; `kill`: SIGKILL s_client after the last DELE's reply. */
async function deleteWithOpenssl(o: ClientOptions, numbers: readonly number[], end: 'quit' | 'kill'): Promise<DeleteRun> {
  if (o.mode === 'plain') throw new Error('openssl s_client only does TLS');
  const steps = [`USER ${o.user}`, { send: `PASS ${o.pass}`, shown: 'PASS ********' }, ...numbers.map((n) => `DELE ${n}`), ...(end === 'quit' ? ['QUIT'] : [])];
  const r = await opensslScript({ host: o.host, port: o.port, mode: o.mode, ...(o.caFile === undefined ? {} : { caFile: o.caFile }), timeoutMs: o.timeoutMs ?? 60_000 }, steps, { end: end === 'kill' ? 'kill' : 'close' });
  const allOk = r.ok && r.replies.length === steps.length && r.replies.every((reply) => reply.status.startsWith('+OK'));
  return { ok: allOk, detail: `${r.transcript}\n${r.stderr.slice(-1_000)}` };
}

export const MATRIX_CLIENTS: readonly MatrixClient[] = [
  {
    id: 'fetchmail-keep',
    name: 'fetchmail --keep',
    label: (port) => (port === 'implicit' ? 'fetchmail --ssl --keep' : 'fetchmail STLS --keep'),
    checks: ['fetch'],
    fetch: (o) => fetchWithFetchmail(o),
  },
  {
    id: 'fetchmail',
    name: 'fetchmail without --keep',
    label: (port) => (port === 'implicit' ? 'fetchmail --ssl' : 'fetchmail STLS'),
    checks: ['fetch-delete'],
    fetch: (o) => fetchWithFetchmail({ ...o, keep: false }),
  },
  {
    id: 'curl',
    name: 'curl',
    label: (port) => (port === 'implicit' ? 'curl pop3s://' : 'curl pop3:// --ssl-reqd'),
    checks: ['fetch'],
    fetch: (o) => fetchWithCurl(o),
  },
  {
    id: 'openssl',
    name: 'openssl s_client',
    label: (port) => (port === 'implicit' ? 's_client' : 's_client -starttls pop3'),
    checks: ['fetch', 'dele-kill', 'dele-quit'],
    fetch: (o) => fetchWithOpenssl(o),
    delete: deleteWithOpenssl,
  },
  {
    id: 'poplib',
    name: 'Python poplib',
    label: (port) => (port === 'implicit' ? 'poplib POP3_SSL' : 'poplib stls()'),
    checks: ['fetch', 'dele-kill', 'dele-quit'],
    fetch: (o) => fetchWithPoplib(o),
    delete: async (o, numbers, end) => {
      const r = await deleteWithPoplib(o, numbers, end);
      return { ok: r.ok, detail: why(r) };
    },
  },
];

export { why as describeClientRun };
