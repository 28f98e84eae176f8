/**
 * The config key an operator edits to change one setting of one backend. Hints and warnings name
 * it through backendKey, so that for a named backend they say `backends.NAME.tls`, not the
 * one-backend `backend_tls` that `backends:` refuses.
 */
import type { BackendConfig } from './types.js';

/** Each setting of a named backend (backends.NAME.*), and its key in the one-backend form. */
export const ONE_BACKEND_KEY_OF = {
  auth: 'backend_auth',
  tls: 'backend_tls',
  ca: 'backend_ca',
  tls_insecure: 'backend_tls_insecure',
  tls_servername: 'backend_tls_servername',
  tls_cert: 'backend_tls_cert',
  tls_key: 'backend_tls_key',
  allow_plaintext_auth: 'allow_plaintext_backend_auth',
  trust_loopback: 'backend_trust_loopback',
  source_address: 'backend_source_address',
  proxy_protocol: 'backend_proxy_protocol',
  xclient: 'backend_xclient',
} as const;

export type BackendSetting = keyof typeof ONE_BACKEND_KEY_OF;

/** `backends.NAME.SETTING` for a named backend, the backend_* key for the one of `backend:`. */
export function backendKey(backend: Pick<BackendConfig, 'name' | 'named'>, setting: BackendSetting): string {
  return backend.named ? `backends.${backend.name}.${setting}` : ONE_BACKEND_KEY_OF[setting];
}

/**
 * A setting with its value, written where the operator writes it: `backends.NAME.tls: starttls`
 * for a named backend; for the one of `backend:` the flag, `--backend-tls starttls` (a boolean
 * flag alone for `true`), as the login hints have always put it.
 */
export function backendSettingText(backend: Pick<BackendConfig, 'name' | 'named'>, setting: BackendSetting, value: string): string {
  if (backend.named) return `${backendKey(backend, setting)}: ${value}`;
  const flag = `--${ONE_BACKEND_KEY_OF[setting].replaceAll('_', '-')}`;
  return value === 'true' ? flag : `${flag} ${value}`;
}
