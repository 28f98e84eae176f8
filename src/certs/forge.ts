/**
 * node-forge, loaded on first use. Loading it costs about 10 MiB of RSS and a few milliseconds,
 * and only the first-run self-signed certificate and legacy PKCS#12 bundles need it: a popwarden
 * given PEM files never does (issue 10.4). A CommonJS package, so require() loads it synchronously.
 */
import { createRequire } from 'node:module';
import type forge from 'node-forge';

export function nodeForge(): typeof forge {
  return createRequire(import.meta.url)('node-forge') as typeof forge;
}
