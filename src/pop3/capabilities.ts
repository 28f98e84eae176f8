/**
 * CAPA (RFC 2449). popwarden's own lists are fixed per situation and rendered once, like nginx
 * does at config time; the backend's list is parsed only to choose a login mechanism and, after
 * login, rewritten so the client learns popwarden's truth about authentication and TLS.
 */

/** The SASL mechanisms popwarden itself accepts from clients (over TLS only). */
export const CLIENT_SASL_MECHANISMS = ['PLAIN', 'LOGIN'] as const;

/** Before STLS on a plaintext listener: no USER, no SASL, so no client is tempted to log in. */
const BEFORE_TLS = ['STLS', 'TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE'];
/** Inside TLS, before login. */
const INSIDE_TLS = ['TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'USER', `SASL ${CLIENT_SASL_MECHANISMS.join(' ')}`];

/** A multi-line CAPA reply; lines that start with "." are dot-stuffed so none can end it early. */
function render(lines: readonly string[]): Buffer {
  const body = lines.map((l) => `${l.startsWith('.') ? '.' : ''}${l}\r\n`).join('');
  return Buffer.from(`+OK Capability list follows\r\n${body}.\r\n`, 'latin1');
}

const BEFORE_TLS_REPLY = render(BEFORE_TLS);
const INSIDE_TLS_REPLY = render(INSIDE_TLS);

/** The pre-login CAPA reply for a connection that is (or is not yet) inside TLS. */
export function preLoginCapabilities(secure: boolean): Buffer {
  return secure ? INSIDE_TLS_REPLY : BEFORE_TLS_REPLY;
}

/** What popwarden needs to know of a backend's CAPA. */
export interface BackendCapabilities {
  /** False when the backend answered -ERR (servers that predate RFC 2449, like popa3d). */
  readonly known: boolean;
  readonly lines: readonly string[];
  readonly stls: boolean;
  readonly user: boolean;
  readonly sasl: ReadonlySet<string>;
  /** XCLIENT is listed: the backend takes the client's address from popwarden. */
  readonly xclient: boolean;
}

export const UNKNOWN_CAPABILITIES: BackendCapabilities = {
  known: false,
  lines: [],
  stls: false,
  user: false,
  sasl: new Set(),
  xclient: false,
};

/**
 * Parsed lists by their lines, so that every session of a backend shares one: a logged-in session
 * keeps its backend's capabilities for as long as it lives, and a copy each (the lines, their
 * strings, the SASL set) cost an idle session about 0.6 KB (issue 10.4). Bounded: a backend whose
 * list changes at every login (a timestamp in IMPLEMENTATION) only empties it now and then.
 */
const parsedLists = new Map<string, BackendCapabilities>();
const MAX_PARSED_LISTS = 64;

/**
 * Interprets the lines of a backend's CAPA reply (body lines, already unstuffed). The same lines
 * give the same (frozen) object.
 */
export function parseCapabilities(lines: readonly string[]): BackendCapabilities {
  // No line holds an LF (lines were split at it), so the joined text names the list exactly.
  const key = lines.join('\n');
  const known = parsedLists.get(key);
  if (known !== undefined) return known;
  if (parsedLists.size >= MAX_PARSED_LISTS) parsedLists.clear();
  const parsed = interpret(Object.freeze([...lines]));
  parsedLists.set(key, parsed);
  return parsed;
}

function interpret(lines: readonly string[]): BackendCapabilities {
  const sasl = new Set<string>();
  let stls = false;
  let user = false;
  let xclient = false;
  for (const capability of lines) {
    const [name = '', ...params] = capability.trim().split(/\s+/);
    switch (name.toUpperCase()) {
      case 'STLS':
        stls = true;
        break;
      case 'USER':
        user = true;
        break;
      case 'SASL':
        for (const mechanism of params) sasl.add(mechanism.toUpperCase());
        break;
      case 'XCLIENT':
        xclient = true;
        break;
    }
  }
  return Object.freeze({ known: true, lines, stls, user, sasl, xclient });
}

/** Capabilities whose truth after login is popwarden's, not the backend's. */
const OWNED_BY_POPWARDEN = new Set(['USER', 'SASL', 'STLS', 'IMPLEMENTATION', 'RESP-CODES', 'AUTH-RESP-CODE']);

/** A backend capability line is relayed only if it is plain printable ASCII (no terminal escapes, S-08). */
const PRINTABLE_CAPABILITY = /^[\x21-\x7e][\x20-\x7e]{0,200}$/;

/**
 * The CAPA reply after login: the backend's own extensions (TOP, UIDL, EXPIRE, LOGIN-DELAY,
 * PIPELINING, ...) with the authentication and TLS lines replaced by popwarden's. PIPELINING is
 * true through popwarden: it queues pipelined commands and serves them in order.
 */
export function postLoginCapabilities(backend: BackendCapabilities): Buffer {
  const kept = backend.lines.filter((capability) => {
    if (!PRINTABLE_CAPABILITY.test(capability)) return false;
    const name = capability.trim().split(/\s+/)[0]?.toUpperCase() ?? '';
    return name !== '' && !OWNED_BY_POPWARDEN.has(name);
  });
  return render([...kept, 'RESP-CODES', 'AUTH-RESP-CODE', 'USER', `SASL ${CLIENT_SASL_MECHANISMS.join(' ')}`]);
}
