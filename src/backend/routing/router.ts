/**
 * The one backend-selection step of a login (issue 13): after the guard's reservation, before
 * any backend contact. Sources are asked in a fixed order (the config's routes, the map file, the
 * Redis hash, the auth_http service), the first that knows the user decides, and routing.default
 * takes the rest. Every answer must name a configured backend (auth_http's address must be one's,
 * unless an unlisted-address template was opted into): a poisoned route cannot send a password
 * to a host of its choosing, and the metric labels stay the configured names.
 */
import type { ConnectionOptions } from 'node:tls';
import type { BackendAddress, BackendConfig, Config, HostPort } from '../../config/types.js';
import type { Logger } from '../../observability/log.js';
import type { Metrics } from '../../observability/metrics.js';
import { MAX_CREDENTIAL_FIELD_OCTETS } from '../../config/limits.js';
import { backendTlsOptions } from '../tls-options.js';
import { rewriteUser } from './keys.js';
import type { RouteQuery, RouteSource, RouteSourceName, SourceAnswer } from './source.js';

/** A backend a login may go to, with its TLS options read once. */
export interface BackendTarget {
  readonly config: BackendConfig;
  readonly tlsOptions: ConnectionOptions;
}

export type RouteDecision =
  | { readonly kind: 'backend'; readonly target: BackendTarget; readonly backendUser: string; readonly source: RouteSourceName }
  /** No source routes the user and there is no default: answered like a wrong password. */
  | { readonly kind: 'unknown' }
  /** The auth_http service refused the user: answered like a wrong password, after at least `waitMs`. */
  | { readonly kind: 'refused'; readonly waitMs: number }
  /** The user's backend is drained: -ERR [SYS/TEMP], nothing is sent to it. */
  | { readonly kind: 'drained'; readonly backend: string; readonly source: RouteSourceName };

/** Unlisted auth_http addresses remembered with their TLS options (bounded: the oldest goes first). */
const MAX_UNLISTED_TARGETS = 256;

/** Distinct unknown backend names logged per router (a reload starts afresh). */
const MAX_LOGGED_UNKNOWN = 100;

const sameAddress = (a: BackendAddress, b: HostPort): boolean => a.kind === 'tcp' && a.port === b.port && a.host.toLowerCase() === b.host.toLowerCase();

export class Router {
  readonly #targets = new Map<string, BackendTarget>();
  readonly #unlisted = new Map<string, BackendTarget>();
  readonly #failing = new Set<RouteSourceName>();
  /** Unknown names already logged (bounded): a bad map line is logged once, not at every login. */
  readonly #loggedUnknown = new Set<string>();

  constructor(
    private readonly config: Config,
    private readonly sources: readonly RouteSource[],
    private readonly log: Logger,
    private readonly metrics: Pick<Metrics, 'routeLookup'>,
  ) {
    for (const backend of config.backends) this.#targets.set(backend.name, { config: backend, tlsOptions: backendTlsOptions(backend) });
  }

  /** The configured backends with their TLS options. */
  get targets(): readonly BackendTarget[] {
    return [...this.#targets.values()];
  }

  async choose(query: RouteQuery): Promise<RouteDecision> {
    for (const source of this.sources) {
      const answer = await this.#ask(source, query);
      if (answer === undefined) continue;
      if (answer.kind === 'refused') return answer;
      const decided = this.#decide(source.name, answer, query);
      if (decided !== undefined) return decided;
    }
    const fallback = this.config.routing.defaultBackend;
    if (fallback === undefined) {
      this.metrics.routeLookup('default', 'miss');
      return { kind: 'unknown' };
    }
    this.metrics.routeLookup('default', 'hit');
    return this.#decide('default', { kind: 'backend', backend: fallback }, query) ?? { kind: 'unknown' };
  }

  async #ask(source: RouteSource, query: RouteQuery): Promise<Exclude<SourceAnswer, { kind: 'error' }> | undefined> {
    let answer: SourceAnswer | undefined;
    try {
      answer = await source.lookup(query);
    } catch (error) {
      answer = { kind: 'error', reason: error instanceof Error ? error.message : String(error) };
    }
    if (answer?.kind === 'error') {
      this.metrics.routeLookup(source.name, 'error');
      // Once per outage, not once per login: the counter says how many logins it cost.
      if (!this.#failing.has(source.name)) {
        this.#failing.add(source.name);
        this.log.warn({ source: source.name, reason: answer.reason }, 'route lookup failed: asking the next source (and routing.default) until it answers again');
      }
      return undefined;
    }
    if (this.#failing.delete(source.name)) this.log.info({ source: source.name }, 'route lookups answer again');
    this.metrics.routeLookup(source.name, answer === undefined ? 'miss' : answer.kind === 'refused' ? 'refused' : 'hit');
    return answer;
  }

  /** A source's answer as a decision; undefined (and logged) when it names no backend popwarden may use. */
  #decide(source: RouteSourceName, answer: Exclude<SourceAnswer, { kind: 'error' | 'refused' }>, query: RouteQuery): RouteDecision | undefined {
    const target = answer.kind === 'backend' ? this.#targets.get(answer.backend) : this.#byAddress(answer.address);
    if (target === undefined) {
      const named = answer.kind === 'backend' ? answer.backend : `${answer.address.host}:${answer.address.port}`;
      this.metrics.routeLookup(source, 'error');
      const seen = `${source} ${named}`;
      if (!this.#loggedUnknown.has(seen) && this.#loggedUnknown.size < MAX_LOGGED_UNKNOWN) {
        this.#loggedUnknown.add(seen);
        this.log.warn({ source, backend: named }, 'route names no configured backend: ignored (routes may only name backends in the config)');
      }
      return undefined;
    }
    if (target.config.drain) return { kind: 'drained', backend: target.config.name, source };
    const rule = (answer.kind === 'backend' ? answer.rewrite : undefined) ?? target.config.rewrite;
    const backendUser = rewriteUser(rule, query.user);
    // A template such as "%u%u%u" can outgrow what a login line may carry (RFC 4616: 255 octets).
    if (backendUser.length > MAX_CREDENTIAL_FIELD_OCTETS) {
      this.log.warn({ source, backend: target.config.name, rewrite: rule }, 'rewritten username is longer than 255 octets: the login fails');
      return { kind: 'unknown' };
    }
    return { kind: 'backend', target, backendUser, source };
  }

  #byAddress(address: HostPort): BackendTarget | undefined {
    for (const target of this.#targets.values()) if (sameAddress(target.config.address, address)) return target;
    const templateName = this.config.routing.authHttp?.unlistedBackendTemplate;
    const template = templateName === undefined ? undefined : this.#targets.get(templateName);
    if (template === undefined) return undefined;
    const key = `${address.host.toLowerCase()}:${address.port}`;
    let target = this.#unlisted.get(key);
    if (target === undefined) {
      // The template's settings at another address; its name stays the template's (a bounded label).
      const config: BackendConfig = { ...template.config, address: { kind: 'tcp', host: address.host, port: address.port } };
      target = { config, tlsOptions: backendTlsOptions(config) };
      if (this.#unlisted.size >= MAX_UNLISTED_TARGETS) this.#unlisted.delete(this.#unlisted.keys().next().value as string);
      this.#unlisted.set(key, target);
    }
    return target;
  }
}
