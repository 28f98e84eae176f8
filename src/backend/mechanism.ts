import type { BackendAuthMode, BackendConfig } from '../config/types.js';
import { backendSettingText, type BackendSetting } from '../config/backend-keys.js';
import type { BackendCapabilities } from '../pop3/capabilities.js';
import type { BackendStrength } from './memory.js';
import { isLoopbackAddress } from '../net/addresses.js';

/** Ports below this need privilege to bind (root or CAP_NET_BIND_SERVICE on Linux). */
const FIRST_UNPRIVILEGED_PORT = 1024;

/** How popwarden proves the client's password to the backend. */
export type BackendMechanism = 'cram-md5' | 'apop' | 'plain' | 'login' | 'user';

/** Mechanisms that put the password itself (base64 is not a disguise) on the link. */
export const CLEARTEXT_MECHANISMS: ReadonlySet<BackendMechanism> = new Set(['plain', 'login', 'user']);

export interface MechanismInputs {
  readonly mode: BackendAuthMode;
  readonly capabilities: BackendCapabilities;
  readonly apopTimestamp: string | undefined;
  /** The link may carry a cleartext password: TLS, a trusted loopback backend, or operator opt-in. */
  readonly cleartextAllowed: boolean;
  /** Which backend, so that a hint names its settings (backends.NAME.* for a named one); default: the one of `backend:`. */
  readonly backend?: Pick<BackendConfig, 'name' | 'named'>;
  /**
   * Auto only: pass over APOP for a cleartext mechanism, because APOP is known not to work for
   * this user (the cleartext retry, see loginToBackend). Ignored where the link may not carry
   * a cleartext password: then APOP is still the only choice.
   */
  readonly passOverApop?: boolean;
}

export type MechanismChoice =
  | { readonly kind: 'use'; readonly mechanism: BackendMechanism }
  | { readonly kind: 'none'; readonly reason: string; readonly hint: string };

/** A setting and value as a hint writes it for this login's backend: the flags of `backend:` unless told which. */
const setting = (inputs: MechanismInputs, key: BackendSetting, value: string): string =>
  backendSettingText(inputs.backend ?? { name: 'default', named: false }, key, value);

const cleartextHint = (inputs: MechanismInputs): string =>
  `set ${setting(inputs, 'tls', 'starttls')} if the backend offers STLS, or ` +
  `${setting(inputs, 'allow_plaintext_auth', 'true')} to accept a cleartext password on this link`;

/**
 * Picks the strongest mechanism the backend offers. Preference: CRAM-MD5 (an HMAC, not open to
 * the APOP prefix-collision attack, CVE-2007-1558), then APOP, then the cleartext ones only where
 * the link may carry them. Never a silent downgrade (B-01): if nothing qualifies, no login.
 */
export function chooseMechanism(inputs: MechanismInputs): MechanismChoice {
  const { mode, capabilities, apopTimestamp, cleartextAllowed } = inputs;
  if (mode !== 'auto') return checkForced(mode, inputs);

  if (capabilities.sasl.has('CRAM-MD5')) return use('cram-md5');
  if (apopTimestamp !== undefined && !(inputs.passOverApop === true && cleartextAllowed)) return use('apop');
  if (!cleartextAllowed) {
    return {
      kind: 'none',
      reason: 'the backend offers neither AUTH CRAM-MD5 nor an APOP timestamp, and the link is not secure',
      hint: cleartextHint(inputs),
    };
  }
  if (capabilities.sasl.has('PLAIN')) return use('plain');
  if (capabilities.sasl.has('LOGIN')) return use('login');
  // USER/PASS is RFC 1939's baseline: servers without CAPA (popa3d) support it without saying so.
  if (capabilities.user || !capabilities.known) return use('user');
  return { kind: 'none', reason: 'the backend offers no login mechanism popwarden knows', hint: 'check the backend configuration' };
}

function checkForced(mode: Exclude<BackendAuthMode, 'auto'>, inputs: MechanismInputs): MechanismChoice {
  const { apopTimestamp, cleartextAllowed } = inputs;
  if (CLEARTEXT_MECHANISMS.has(mode) && !cleartextAllowed) {
    return { kind: 'none', reason: `${setting(inputs, 'auth', mode)} would send the password in clear`, hint: cleartextHint(inputs) };
  }
  // Legacy servers accept AUTH mechanisms their CAPA does not list, and the operator who forces
  // one knows the server: it is tried, and a backend that refuses the AUTH command itself fails
  // the login clearly (backend/login.ts), never a fallback. APOP alone cannot work unoffered.
  if (mode === 'apop' && apopTimestamp === undefined) {
    return {
      kind: 'none',
      reason: `${setting(inputs, 'auth', 'apop')} is forced but the backend greeting carries no APOP timestamp`,
      hint: `use ${setting(inputs, 'auth', 'auto')}, or enable APOP on the backend`,
    };
  }
  return use(mode);
}

function use(mechanism: BackendMechanism): MechanismChoice {
  return { kind: 'use', mechanism };
}

/** The strongest login the backend offers, whichever popwarden then uses (for BackendMemory). */
export function strongestOffered(capabilities: BackendCapabilities, apopTimestamp: string | undefined): BackendStrength {
  if (capabilities.sasl.has('CRAM-MD5')) return 'cram-md5';
  return apopTimestamp === undefined ? 'cleartext' : 'apop';
}

/**
 * Whether a loopback link may carry a cleartext password. Sniffing loopback needs root, but any
 * local user can bind an unprivileged port while the real server is down and collect passwords
 * (issue 9.7): by default (`trust` undefined) only a privileged port is trusted; `true` is the
 * operator's explicit word for any port, `false` never.
 */
export function loopbackTrusted(trust: boolean | undefined, remoteAddress: string, port: number): boolean {
  if (trust === false || !isLoopbackAddress(remoteAddress)) return false;
  return trust === true || port < FIRST_UNPRIVILEGED_PORT;
}
