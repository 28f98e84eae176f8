/**
 * A backend's CAPA answer, reused for a minute (CAPABILITIES_REUSE_MS) by the logins after one
 * that asked, so most logins skip the CAPA exchange. Only an answer that made the login use
 * AUTH CRAM-MD5 on a link without STLS is kept, so reusing it can only make popwarden send what
 * it sent the backend before: a CRAM-MD5 response, never a password in clear, and never a link
 * left in clear that STLS would have protected. A backend changed meanwhile (or an impostor on
 * its port) that does not take CRAM-MD5 refuses the AUTH command before any credential is sent;
 * that login fails as not judged, the entry is dropped, and the next login asks CAPA again and
 * is judged by the offer memory as always. An entry is not refreshed by the logins that reuse
 * it: a minute after it was learnt, a login asks again.
 */
import { CAPABILITIES_REUSE_MS, MAX_REMEMBERED_BACKEND_ADDRESSES } from '../config/limits.js';
import type { BackendCapabilities } from '../pop3/capabilities.js';

export class CapabilityCache {
  /**
   * By backend address (HOST:PORT), the one learnt longest ago first. Routes to unlisted addresses
   * are not bounded by the configured backends: MAX_REMEMBERED_BACKEND_ADDRESSES is.
   */
  readonly #entries = new Map<string, { readonly capabilities: BackendCapabilities; readonly learntAt: number }>();

  constructor(
    private readonly reuseMs = CAPABILITIES_REUSE_MS,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** The capabilities learnt from `address` within the reuse time, if any. */
  fresh(address: string): BackendCapabilities | undefined {
    const entry = this.#entries.get(address);
    if (entry === undefined) return undefined;
    if (this.now() - entry.learntAt >= this.reuseMs) {
      this.#entries.delete(address);
      return undefined;
    }
    return entry.capabilities;
  }

  /** What a login just asked and used (CRAM-MD5, no STLS); the caller checks that. */
  remember(address: string, capabilities: BackendCapabilities): void {
    this.#entries.delete(address);
    if (this.#entries.size >= MAX_REMEMBERED_BACKEND_ADDRESSES) this.#entries.delete(this.#entries.keys().next().value!);
    this.#entries.set(address, { capabilities, learntAt: this.now() });
  }

  forget(address: string): void {
    this.#entries.delete(address);
  }
}
