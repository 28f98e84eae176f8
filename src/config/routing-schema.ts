/**
 * The schema of named backends and of the routes that choose one per user (issue 13, the ISP
 * gateway), kept apart from schema.ts so that the one-backend keys there stay as they were. The
 * value helpers (durations, addresses, file paths) are schema.ts's own, handed in, so each value is
 * written and checked the same way in both places.
 */
import { z } from 'zod';
import { fail } from './config-error.js';
import type { Source } from './explain.js';
import { BACKEND_AUTH_MODES, BACKEND_PROXY_PROTOCOL_MODES, BACKEND_TLS_MODES, BACKEND_XCLIENT_MODES } from './types.js';
import { ONE_BACKEND_KEY_OF } from './backend-keys.js';
import { MAX_ROUTE_PATTERN_LENGTH, isBoundedPattern } from './route-patterns.js';

/** A backend's name: it becomes a metric label value and appears in logs, so it is short and plain. */
export const BACKEND_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/;
const BACKEND_NAME_PROBLEM = 'must be 1 to 32 letters, digits, "_", "." or "-", starting with a letter or digit';

/** The name the one backend of `backend:` + `backend_*` has. */
export const DEFAULT_BACKEND_NAME = 'default';

/** Octets of a rewrite template: it makes a username, which RFC 4616 bounds at 255. */
const MAX_TEMPLATE_LENGTH = 64;

/**
 * `strip_domain`, or a template of `%u` (the name as typed, trimmed), `%n` (before the last `@`),
 * `%d` (after it) and `%%`, as Dovecot writes them. Anything else after `%` is refused, so that a
 * typo cannot send every user to the backend as the same literal name.
 */
const rewriteSchema = z
  .string()
  .max(MAX_TEMPLATE_LENGTH)
  .regex(/^(strip_domain|(?:[\x21-\x24\x26-\x7e]|%[und%])+)$/, {
    message: 'must be strip_domain or a template of printable characters with %u, %n, %d or %% (e.g. "%n@example.org")',
  });

const backendName = z.string().regex(BACKEND_NAME, { message: BACKEND_NAME_PROBLEM });

/** The value schemas of schema.ts that a named backend reuses. */
export interface ValueSchemas<Address extends z.ZodType> {
  readonly address: Address;
  readonly duration: () => z.ZodType<number>;
  readonly filePath: z.ZodType<string>;
  readonly ipAddress: z.ZodType<string>;
}

/** `backends:` and `routing:`, built on schema.ts's value helpers. */
export function routingSchemas<Address extends z.ZodType>(values: ValueSchemas<Address>) {
  /** One named backend: the backend_* keys without their prefix, plus its probe interval and drain. */
  const namedBackend = z.strictObject({
    /** Required. HOST:PORT, as `backend`. */
    address: values.address,
    /** Default auto. As backend_auth. */
    auth: z.enum(BACKEND_AUTH_MODES).prefault('auto'),
    /** Default auto. As backend_tls. */
    tls: z.enum(BACKEND_TLS_MODES).prefault('auto'),
    /** Optional. As backend_ca. */
    ca: values.filePath.optional(),
    /** Default false. As backend_tls_insecure. */
    tls_insecure: z.boolean().prefault(false),
    /** Optional. As backend_tls_servername. */
    tls_servername: z.string().min(1).optional(),
    /** Optional. As backend_tls_cert (with tls_key). */
    tls_cert: values.filePath.optional(),
    /** Optional. As backend_tls_key. */
    tls_key: values.filePath.optional(),
    /** Default false. As allow_plaintext_backend_auth. */
    allow_plaintext_auth: z.boolean().prefault(false),
    /** Optional. As backend_trust_loopback. */
    trust_loopback: z.boolean().optional(),
    /** Optional. As backend_source_address. */
    source_address: values.ipAddress.optional(),
    /** Default off. As backend_proxy_protocol: v1 or v2 for a backend that expects the header. */
    proxy_protocol: z.enum(BACKEND_PROXY_PROTOCOL_MODES).prefault('off'),
    /** Default off. As backend_xclient. */
    xclient: z.enum(BACKEND_XCLIENT_MODES).prefault('off'),
    /** Optional; default backend_probe_interval. How often this backend is probed; 0s: never. */
    probe_interval: values.duration().optional(),
    /** Default false. No new sessions go to this backend (its users get -ERR [SYS/TEMP]); live ones finish. Takes effect on reload. */
    drain: z.boolean().prefault(false),
    /** Optional. The username this backend gets: strip_domain, or a template (%u, %n, %d). A route's own rewrite wins. */
    rewrite: rewriteSchema.optional(),
  });

  const backends = z
    .record(z.string(), namedBackend)
    .superRefine((map, ctx) => {
      const names = Object.keys(map);
      if (names.length === 0) ctx.addIssue({ code: 'custom', message: 'is empty; name at least one backend' });
      for (const name of names.filter((n) => !BACKEND_NAME.test(n))) ctx.addIssue({ code: 'custom', path: [name], message: BACKEND_NAME_PROBLEM });
      for (const [name, entry] of Object.entries(map)) {
        if ((entry.tls_cert === undefined) !== (entry.tls_key === undefined)) {
          ctx.addIssue({ code: 'custom', path: [name, entry.tls_cert === undefined ? 'tls_key' : 'tls_cert'], message: 'needs both tls_cert and tls_key, or neither' });
        }
      }
    });

  /** One static route: `user` (exact, or `*@domain`) or `regex`, and the backend it sends to. */
  const staticRoute = z
    .strictObject({
      /** An exact username (compared trimmed, and lower-cased unless username_canonical.lower_case is false), or `*@domain`. */
      user: z.string().min(1).max(255).regex(/^[\x21-\x7e]+$/, { message: 'must be printable ASCII without spaces' }).optional(),
      /** A regular expression over the whole username (anchor it yourself). No nested quantifiers or back-references: it runs on text the client chose. */
      regex: z
        .string()
        .min(1)
        .max(MAX_ROUTE_PATTERN_LENGTH)
        .refine(isBoundedPattern, {
          message: 'is not a regular expression popwarden runs on client input (invalid, a back-reference, or a repeated group that contains a repetition or alternatives)',
        })
        .optional(),
      /** Required. The name of a configured backend. */
      backend: backendName,
      /** Optional. Overrides the backend's rewrite for these users. */
      rewrite: rewriteSchema.optional(),
    })
    .refine((route) => (route.user === undefined) !== (route.regex === undefined), { message: 'needs exactly one of user or regex' });

  const authHttp = z.strictObject({
    /** Required. http:// or https:// URL of an endpoint speaking nginx's auth_http protocol. */
    url: z
      .string()
      .refine((text) => /^https?:\/\/[^\s]+$/.test(text) && URL.canParse(text), { message: 'must be an http:// or https:// URL' }),
    /** Default 2s. The whole exchange; a slow or dead endpoint falls through to routing.default. */
    timeout: values.duration().prefault('2s'),
    /** Default false. Send the password as Auth-Pass. Off: the endpoint routes by name only and never sees a password. */
    send_password: z.boolean().prefault(false),
    /**
     * Optional. The name of a configured backend whose settings (auth, tls, ...) are used for an
     * Auth-Server/Auth-Port that matches no configured backend. Unset: such an answer is refused,
     * so a compromised routing service cannot send passwords to a host of its choosing.
     */
    unlisted_backend_template: backendName.optional(),
  });

  const routing = z.strictObject({
    /** Default []. Tried first, in order: the first match decides. */
    routes: z.array(staticRoute).max(10_000).prefault([]),
    /** Optional. A file of `user-or-*@domain backend-name` lines, re-read on reload and when it changes; a bad file keeps the last good map. */
    map_file: values.filePath.optional(),
    /** Optional. A Redis hash (in the redis: store) of user -> backend name, then `*@domain` -> backend name; shared by every instance. */
    redis_key: z.string().min(1).max(200).optional(),
    /** Optional. nginx-style auth_http routing service, asked after the other sources. */
    auth_http: authHttp.optional(),
    /** Optional. The backend for users no source routes; unset: such users fail like a wrong password. With `backend:` it is `default`. */
    default: backendName.optional(),
  });

  return { backends, routing };
}

/** The one-backend keys that `backends:` replaces (each backend has its own, without the prefix). */
export const ONE_BACKEND_KEYS: readonly string[] = Object.values(ONE_BACKEND_KEY_OF);

/**
 * `backends:` with a backend_* key set anywhere (file, environment, flag) is refused rather than
 * the key being silently ignored: the operator meant it for some backend, and it applies to none.
 */
export function refuseMixedBackendForms(sources: ReadonlyMap<string, Source>): void {
  if (!sources.has('backends')) return;
  const stray = ONE_BACKEND_KEYS.find((key) => sources.has(key));
  if (stray === undefined) return;
  const source = sources.get(stray);
  const where = source?.kind === 'flag' || source?.kind === 'env' ? source.label : stray;
  fail(`${where} is set together with backends; each named backend takes its own settings (backends.NAME.${stray.replace(/^backend_|_backend/g, '')}), so remove it`);
}
