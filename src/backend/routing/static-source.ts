import type { StaticRoute } from '../../config/types.js';
import type { RouteSource, SourceAnswer } from './source.js';
import { OrderedRoutes } from './table.js';

/** routing.routes: the config's own list, tried first. */
export function staticSource(routes: readonly StaticRoute[], lowerCase: boolean): RouteSource {
  const table = new OrderedRoutes(routes, lowerCase);
  return {
    name: 'static',
    lookup(query): SourceAnswer | undefined {
      const route = table.find(query.key);
      return route === undefined ? undefined : { kind: 'backend', backend: route.backend, rewrite: route.rewrite };
    },
  };
}
