/**
 * routing.map_file: `user backend` and `*@domain backend` lines (perdition's popmap, simplified),
 * `#` comments and blank lines. Read at start, on reload (SIGHUP) and when the file changes; a
 * file that cannot be read or has a bad line is refused whole and the last good map stays in use,
 * with one log line per distinct problem (not one per attempt).
 */
import { readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { StaticRoute } from '../../config/types.js';
import type { Logger } from '../../observability/log.js';
import { BACKEND_NAME } from '../../config/routing-schema.js';
import type { RouteSource, SourceAnswer } from './source.js';
import { MappedRoutes } from './table.js';

/** A map file larger than this is refused (it is read whole, into memory). */
export const MAX_MAP_FILE_OCTETS = 64 * 1024 * 1024;

/** Editors and deploy tools write a file in several steps: re-read once they have settled. */
const CHANGE_DEBOUNCE_MS = 200;

/** A user (no spaces or control bytes, at most 255 octets) or `*@domain`. */
const ROUTE_USER = /^[\x21-\x7e]{1,255}$/;

/** The routes of a map file's text, or the first problem (with its line number). */
export function parseMapFile(text: string): { ok: true; routes: StaticRoute[] } | { ok: false; problem: string } {
  const routes: StaticRoute[] = [];
  const lines = text.split('\n');
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!.replace(/\r$/, '').trim();
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(/[ \t]+/);
    const [user, backend] = fields;
    if (fields.length !== 2 || user === undefined || backend === undefined) return { ok: false, problem: `line ${index + 1}: expected "user-or-*@domain backend-name"` };
    if (!ROUTE_USER.test(user) || user === '*@') return { ok: false, problem: `line ${index + 1}: "${user.slice(0, 64)}" is not a user name or *@domain` };
    if (!BACKEND_NAME.test(backend)) return { ok: false, problem: `line ${index + 1}: "${backend.slice(0, 64)}" is not a backend name` };
    const match = user.startsWith('*@') ? ({ kind: 'domain', domain: user.slice(2) } as const) : ({ kind: 'user', user } as const);
    routes.push({ match, backend, rewrite: undefined });
  }
  return { ok: true, routes };
}

export class MapFile implements RouteSource {
  readonly name = 'map_file' as const;
  #routes: MappedRoutes | undefined;
  #lastProblem: string | undefined;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    readonly path: string,
    readonly lowerCase: boolean,
    private readonly log: Logger,
  ) {
    this.reload();
    this.#watch();
  }

  /** Re-reads the file; keeps the last good map when it is unreadable or bad. */
  reload(): void {
    const problem = this.#read();
    if (problem === undefined) {
      this.#lastProblem = undefined;
      return;
    }
    if (problem === this.#lastProblem) return;
    this.#lastProblem = problem;
    const kept = this.#routes === undefined ? 'no map file routes until it is fixed' : 'the last good map stays in use';
    this.log.error({ mapFile: this.path, reason: problem }, `routing.map_file refused: ${kept}`);
  }

  #read(): string | undefined {
    let text: string;
    try {
      if (statSync(this.path).size > MAX_MAP_FILE_OCTETS) return `larger than ${MAX_MAP_FILE_OCTETS} octets`;
      text = readFileSync(this.path, 'latin1');
    } catch (error) {
      return (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    }
    const parsed = parseMapFile(text);
    if (!parsed.ok) return parsed.problem;
    this.#routes = new MappedRoutes(parsed.routes, this.lowerCase);
    this.log.info({ mapFile: this.path, routes: this.#routes.size }, 'routing.map_file loaded');
    return undefined;
  }

  /** Watches the directory: the file is usually replaced by rename, which a watch on it would lose. */
  #watch(): void {
    const name = basename(this.path);
    try {
      this.#watcher = watch(dirname(this.path), { persistent: false }, (_event, changed) => {
        if (changed !== null && changed.toString() !== name) return;
        clearTimeout(this.#timer);
        this.#timer = setTimeout(() => this.reload(), CHANGE_DEBOUNCE_MS);
      });
      this.#watcher.on('error', (error) => this.log.warn({ err: error, mapFile: this.path }, 'routing.map_file: watching stopped; SIGHUP still reloads it'));
    } catch (error) {
      this.log.warn({ err: error, mapFile: this.path }, 'routing.map_file: cannot watch its directory; SIGHUP still reloads it');
    }
  }

  lookup(query: { readonly key: string }): SourceAnswer | undefined {
    const route = this.#routes?.find(query.key);
    return route === undefined ? undefined : { kind: 'backend', backend: route.backend };
  }

  close(): void {
    clearTimeout(this.#timer);
    this.#watcher?.close();
    this.#watcher = undefined;
  }
}
