import type { BackendConfig } from '../config/types.js';

/**
 * Chooses the backend for a login. Today every user goes to the one configured server; per-user
 * routing (an ISP gateway in front of many mail hosts) plugs in here and nowhere else.
 */
export function chooseBackend(config: BackendConfig, _user: string): BackendConfig {
  return config;
}
