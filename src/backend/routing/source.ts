/**
 * What every route source answers, and the names they go by in logs and metrics. A source that
 * has no route for a user answers undefined and the next one is asked; one that fails (Redis
 * down, the auth_http service slow) answers `error`, which the router logs, counts and treats as
 * "no route here".
 */
import type { HostPort } from '../../config/types.js';
import type { RouteSourceLabel } from '../../observability/metrics.js';

/** A source's name, as its metric label. */
export type RouteSourceName = RouteSourceLabel;

/** What a login asks a source. */
export interface RouteQuery {
  /** The route key (routing/keys.ts): trimmed, lower-cased unless configured otherwise. */
  readonly key: string;
  /** The name as the client typed it (auth_http sends it as Auth-User). */
  readonly user: string;
  /** Read only by auth_http with send_password: true. */
  readonly password: () => Buffer;
  readonly clientIp: string;
  /** Which login mechanism the client used, in auth_http's words (plain, apop, cram-md5...). */
  readonly method: string;
  /** 1 for the first login attempt of the session, then 2, 3 ... (auth_http's Auth-Login-Attempt). */
  readonly attempt: number;
}

export type SourceAnswer =
  | { readonly kind: 'backend'; readonly backend: string; readonly rewrite?: string | undefined }
  /** auth_http names an address, not a backend; the router matches it to one. */
  | { readonly kind: 'address'; readonly address: HostPort }
  /** auth_http refused the user: failed like a wrong password, after at least `waitMs`. */
  | { readonly kind: 'refused'; readonly waitMs: number }
  | { readonly kind: 'error'; readonly reason: string };

export interface RouteSource {
  readonly name: RouteSourceName;
  lookup(query: RouteQuery): Promise<SourceAnswer | undefined> | SourceAnswer | undefined;
}
