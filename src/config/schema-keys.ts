/**
 * Reflection on the schema: every leaf key with the names it has as a flag (`timeouts.idle` →
 * `--timeouts-idle`) and an environment variable (`POPWARDEN_TIMEOUTS__IDLE`), its kind, choices,
 * default, how its value is written, and whether it holds a secret, all read from the zod schema
 * itself so that no list of keys is kept by hand.
 */
import { z } from 'zod';
import { configSchema, type ValueSyntax } from './schema.js';

/** How a flag or environment value is turned into the type the schema expects. */
export type ConfigKeyKind = 'string' | 'boolean' | 'integer' | 'list';

export interface ConfigKey {
  /** ["timeouts", "idle"] */
  readonly path: readonly string[];
  /** "timeouts.idle", as printed in messages. */
  readonly name: string;
  /** "timeouts-idle", without the leading "--". */
  readonly flag: string;
  /** "POPWARDEN_TIMEOUTS__IDLE" */
  readonly env: string;
  readonly kind: ConfigKeyKind;
  /** The allowed words, for enum keys. */
  readonly choices: readonly string[] | undefined;
  /** The default as the user would write it, for --help. */
  readonly defaultValue: unknown;
  /** Masked in --check-config output. Mark a key with `.meta({ secret: true })`; see also holdsSecret. */
  readonly secret: boolean;
  /** How its parsed value (of each list item, for a list) is written back; undefined: as parsed. */
  readonly syntax: ValueSyntax | undefined;
  /** Neither required nor defaulted: the key may stay unset (backend_ca, redis.url). */
  readonly optional: boolean;
}

/** Key names that hold secrets even if nobody remembered to mark them in the schema (second belt). */
const SECRET_NAME = /pass(word|phrase)?|secret|token|credential|api_key|private/i;

/** The rule for masking a key's value: marked secret in the schema, or named like a secret. */
export function holdsSecret(key: Pick<ConfigKey, 'path' | 'secret'> & { readonly kind?: ConfigKeyKind }): boolean {
  // A switch cannot hold a secret, whatever its name (routing.auth_http.send_password).
  if (key.kind === 'boolean') return false;
  return key.secret || SECRET_NAME.test(key.path.at(-1) ?? '');
}

export const ENV_PREFIX = 'POPWARDEN_';

/** Peels optional/default/pipe wrappers to the schema that says what type the user writes. */
interface LeafFacts {
  readonly kind: ConfigKeyKind | 'object';
  readonly defaultValue: unknown;
  readonly secret: boolean;
  readonly syntax: ValueSyntax | undefined;
  readonly optional: boolean;
  readonly choices?: readonly string[];
}

const syntaxOf = (schema: z.ZodType) => schema.meta()?.['syntax'] as ValueSyntax | undefined;

function describeLeaf(schema: z.ZodType): LeafFacts {
  let current: z.ZodType = schema;
  let defaultValue: unknown;
  let secret = false;
  let syntax: ValueSyntax | undefined;
  let optional = false;
  for (;;) {
    if (current.meta()?.['secret'] === true) secret = true;
    syntax ??= syntaxOf(current);
    if (current instanceof z.ZodOptional) {
      optional = true;
      current = current.unwrap() as z.ZodType;
    } else if (current instanceof z.ZodPrefault || current instanceof z.ZodDefault) {
      defaultValue ??= current.def.defaultValue;
      current = current.unwrap() as z.ZodType;
    } else if (current instanceof z.ZodPipe) current = current.in as z.ZodType;
    else break;
  }
  const facts = { defaultValue, secret, syntax, optional: optional && defaultValue === undefined };
  if (current instanceof z.ZodArray) return { ...facts, kind: 'list', syntax: syntax ?? syntaxOf(current.element as z.ZodType) };
  if (current instanceof z.ZodBoolean) return { ...facts, kind: 'boolean' };
  if (current instanceof z.ZodNumber) return { ...facts, kind: 'integer' };
  if (current instanceof z.ZodObject) return { ...facts, kind: 'object' };
  if (current instanceof z.ZodEnum) return { ...facts, kind: 'string', choices: current.options.map(String) };
  return { ...facts, kind: 'string' };
}

function collectKeys(shape: Record<string, z.ZodType>, prefix: readonly string[]): ConfigKey[] {
  return Object.entries(shape).flatMap(([key, schema]): ConfigKey[] => {
    const path = [...prefix, key];
    const leaf = describeLeaf(schema);
    if (leaf.kind === 'object') {
      let inner: z.ZodType = schema;
      while (!(inner instanceof z.ZodObject)) inner = (inner as z.ZodPrefault<z.ZodType>).unwrap();
      return collectKeys(inner.shape as Record<string, z.ZodType>, path);
    }
    return [
      {
        path,
        name: path.join('.'),
        flag: path.join('-').replaceAll('_', '-'),
        env: ENV_PREFIX + path.join('__').toUpperCase(),
        kind: leaf.kind,
        choices: leaf.choices,
        defaultValue: leaf.defaultValue,
        secret: leaf.secret,
        syntax: leaf.syntax,
        optional: leaf.optional,
      },
    ];
  });
}

/** Every leaf key of the schema with its flag and environment names, in schema order. */
export const CONFIG_KEYS: readonly ConfigKey[] = Object.freeze(collectKeys(configSchema.shape, []));

/** Known key names at one level of the file (for "did you mean" on unknown keys). */
export function knownKeysAt(path: readonly PropertyKey[]): readonly string[] {
  let shape: Record<string, z.ZodType> = configSchema.shape;
  for (const segment of path) {
    let inner: z.ZodType | undefined = shape[String(segment)];
    while (inner !== undefined && !(inner instanceof z.ZodObject)) {
      if (inner instanceof z.ZodPrefault || inner instanceof z.ZodOptional) inner = inner.unwrap() as z.ZodType;
      else return [];
    }
    if (inner === undefined) return [];
    shape = inner.shape as Record<string, z.ZodType>;
  }
  return Object.keys(shape);
}
