/**
 * The server dimension of the interop matrix: each row is one real POP3 server in one setup,
 * started by the existing harness (test/harness/dovecot.ts, test/harness/legacy.ts), with what
 * popwarden needs to be told about it and what it needs so popwarden can avoid cleartext.
 */
import type { BackendConfig } from '../../src/config/types.js';
import type { SampleAccount } from '../harness/maildrop.js';
import type { Program } from '../harness/recorded-program.js';
import { startDovecot, type DovecotProfile } from '../harness/dovecot.js';
import { startLegacyServer, type LegacyOptions } from '../harness/legacy.js';

/**
 * How popwarden reaches the server (forms.ts): `tcp`, HOST:PORT on loopback; `exec`, popwarden
 * spawns the server for each session as inetd does; `unix`, a socket-activated server behind a
 * UNIX socket. Servers that can run from inetd (the legacy ones) have all three.
 */
export type BackendForm = 'tcp' | 'exec' | 'unix';

/** A running server as the matrix uses it: where it listens and how to read its maildrop directly. */
export interface RunningServer {
  readonly host: string;
  readonly port: number;
  /** The certificate to trust when popwarden upgrades the link with STLS. */
  readonly caFile?: string;
  /** One session of the server on stdin/stdout, as inetd runs it (exec: and unix: forms). */
  readonly exec?: Program;
  /** Resolves once no session of the server is left (its changes are on disk). */
  whenIdle(timeoutMs?: number): Promise<void>;
  /** Puts the sample maildrops back (or what snapshotMaildrop kept); only while idle. */
  resetMaildrop(): void;
  /** Servers that change the maildrop on first open: resetMaildrop() puts back the maildrop as it is now. */
  snapshotMaildrop?(): void;
  /** Every message as the server serves it directly, without QUIT (nothing changes). */
  fetchDirect(account: SampleAccount): Promise<Buffer[]>;
  /** Every message's header (`TOP n 0`), directly, without QUIT. */
  headersDirect(account: SampleAccount): Promise<Buffer[]>;
  stop(): Promise<void>;
}

/** One row of the matrix. */
export interface ServerRow {
  /** Short, stable name (test names, report keys). */
  readonly id: string;
  /** The server and its setup, for the table. */
  readonly label: string;
  readonly forms: readonly BackendForm[];
  /**
   * The server offers APOP, CRAM-MD5 or STLS, so the backend link must never carry the password
   * in clear, base64 or hex. False: popwarden sends it as the operator allowed (trusted loopback).
   */
  readonly protectsPassword: boolean;
  /** What the server needs so popwarden can avoid cleartext on the link (docs/INTEROP.md). */
  readonly needs: string;
  /**
   * What the table must say: the server's offers as the matrix probes them (matrix.test.ts,
   * describeOffers) and what popwarden chose on the link (describeChoice). Checked, not only shown.
   */
  readonly expect: { readonly offers: string; readonly chose: string };
  /** Set when every cell of the row is known to fail, with the reason (cells run as todo). */
  readonly knownFailure?: string;
  /** popwarden's backend settings beyond how to reach it. */
  backendSettings?(server: RunningServer): Partial<BackendConfig>;
  start(): Promise<RunningServer>;
}

/** The Dovecot the harness runs (Debian 12's package), named once for every Dovecot row's label. */
const DOVECOT = 'Dovecot 2.3.19';

function dovecotRow(profile: DovecotProfile, setup: string, row: Pick<ServerRow, 'protectsPassword' | 'needs' | 'expect'>): ServerRow {
  return {
    id: `dovecot-${profile}`,
    label: `${DOVECOT}, ${setup}`,
    forms: ['tcp'],
    ...row,
    ...(profile === 'stls' ? { backendSettings: (server: RunningServer) => ({ caFile: server.caFile }) } : {}),
    start: () => startDovecot({ profile }),
  };
}

function legacyRow(
  id: string,
  label: string,
  opts: LegacyOptions,
  row: Omit<ServerRow, 'id' | 'label' | 'start' | 'forms'> & { forms?: readonly BackendForm[] },
): ServerRow {
  return { id, label, forms: ['tcp'], ...row, start: () => startLegacyServer(opts) };
}

/** Every row, in table order: one literal each, alike by design (duplicates pairs them), so it reads as the table it prints. */
export const SERVER_ROWS: readonly ServerRow[] = [
  dovecotRow('apop-only', 'APOP only', {
    protectsPassword: true,
    needs: '`auth_mechanisms = apop` and plain (or CRAM-MD5) passwords in its passdb',
    expect: { offers: 'APOP timestamp, USER', chose: 'APOP' },
  }),
  dovecotRow('cram-md5-only', 'CRAM-MD5 only', {
    protectsPassword: true,
    needs: '`auth_mechanisms = cram-md5` and plain (or CRAM-MD5) passwords in its passdb',
    expect: { offers: 'no timestamp, USER, SASL CRAM-MD5', chose: 'CRAM-MD5' },
  }),
  dovecotRow('user-only', 'USER/PASS only', {
    protectsPassword: false,
    needs: 'one of the above, or STLS; as it is, only a trusted link (privileged loopback port)',
    expect: { offers: 'no timestamp, USER, SASL PLAIN LOGIN', chose: 'PLAIN' },
  }),
  dovecotRow('stls', 'STLS', {
    protectsPassword: true,
    needs: '`ssl = yes` with a certificate popwarden trusts (`backend_ca`)',
    expect: { offers: 'APOP timestamp, USER, SASL PLAIN LOGIN CRAM-MD5, STLS', chose: 'STLS, then CRAM-MD5' },
  }),
  legacyRow('popa3d', 'popa3d 1.0.3', { server: 'popa3d' }, {
    forms: ['tcp', 'exec', 'unix'],
    protectsPassword: false,
    needs: 'nothing it can offer (USER/PASS only, no CAPA): run it on a privileged loopback port (inetd, socat) and keep it off the network',
    expect: { offers: 'no timestamp, no CAPA', chose: 'USER' },
  }),
  legacyRow('mailutils-apop', 'GNU mailutils pop3d 3.15, APOP', { server: 'mailutils' }, {
    forms: ['tcp', 'exec', 'unix'],
    protectsPassword: true,
    needs: 'an APOP secret per user in its popauth database (`popauth`, `apop-database-file`)',
    expect: { offers: 'APOP timestamp, USER', chose: 'APOP' },
  }),
  legacyRow('mailutils-stls', 'GNU mailutils pop3d 3.15, APOP + STLS', { server: 'mailutils', stls: true }, {
    protectsPassword: true,
    needs: 'popauth APOP secrets, or STLS (`tls-mode stls`) with a certificate popwarden trusts; popwarden uses both',
    backendSettings: (server) => ({ caFile: server.caFile }),
    expect: { offers: 'APOP timestamp, USER, STLS', chose: 'STLS, then APOP' },
  }),
  legacyRow('solid-pop3d', 'solid-pop3d 0.15, users without an APOP secret', { server: 'solid-pop3d' }, {
    protectsPassword: false,
    needs:
      'an APOP secret in every user\'s `~/.spop3d` (`pop_auth`): it offers APOP to every user, and popwarden retries a refused APOP in clear, on a trusted link only',
    expect: { offers: 'APOP timestamp, no CAPA', chose: 'APOP, then USER' },
  }),
];
