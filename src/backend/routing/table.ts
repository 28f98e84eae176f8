/**
 * Routes held in memory. The config's static list (exact users, `*@domain`, regular expressions)
 * is tried in order, the first match wins. A map file (exact users and `*@domain`, possibly many
 * thousands of lines) is looked up as the Redis hash is: the exact name, then its domain.
 * Regular expressions are compiled once, here, and were checked at load for the shapes that
 * backtrack without bound (config/route-patterns.ts); the name they run on is at most 255 octets.
 */
import type { RouteMatch, StaticRoute } from '../../config/types.js';
import { domainOf } from './keys.js';

type Test = (key: string, domain: string | undefined) => boolean;

function compile(match: RouteMatch): Test {
  switch (match.kind) {
    case 'user':
      return (key) => key === match.user;
    case 'domain':
      return (_key, domain) => domain === match.domain;
    case 'regex': {
      const pattern = new RegExp(match.source);
      return (key) => pattern.test(key);
    }
  }
}

/** Users and domains compared as route keys are made (routing/keys.ts). */
function normalised(route: StaticRoute, lowerCase: boolean): StaticRoute {
  const normal = (text: string): string => (lowerCase ? text.toLowerCase() : text);
  const match = route.match;
  if (match.kind === 'user') return { ...route, match: { kind: 'user', user: normal(match.user) } };
  if (match.kind === 'domain') return { ...route, match: { kind: 'domain', domain: normal(match.domain) } };
  return route;
}

/** The config's routes: the first (in order) that takes a key. */
export class OrderedRoutes {
  readonly #routes: readonly { readonly test: Test; readonly route: StaticRoute }[];

  constructor(routes: readonly StaticRoute[], lowerCase: boolean) {
    this.#routes = routes.map((route) => normalised(route, lowerCase)).map((route) => ({ test: compile(route.match), route }));
  }

  find(key: string): StaticRoute | undefined {
    const domain = domainOf(key);
    return this.#routes.find((entry) => entry.test(key, domain))?.route;
  }
}

/** A map file's routes: the exact name, else `*@` its domain; a repeated entry: the first wins. */
export class MappedRoutes {
  readonly #users = new Map<string, StaticRoute>();
  readonly #domains = new Map<string, StaticRoute>();

  constructor(routes: readonly StaticRoute[], lowerCase: boolean) {
    for (const route of routes.map((entry) => normalised(entry, lowerCase))) {
      const match = route.match;
      if (match.kind === 'user' && !this.#users.has(match.user)) this.#users.set(match.user, route);
      if (match.kind === 'domain' && !this.#domains.has(match.domain)) this.#domains.set(match.domain, route);
    }
  }

  get size(): number {
    return this.#users.size + this.#domains.size;
  }

  find(key: string): StaticRoute | undefined {
    const domain = domainOf(key);
    return this.#users.get(key) ?? (domain === undefined ? undefined : this.#domains.get(domain));
  }
}
