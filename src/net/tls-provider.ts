/**
 * The TLS material in use, swapped whole on reload: what the listeners, STLS and the SNI
 * callback read, so a new certificate reaches them without a restart.
 */
import type { SecureContext, TlsOptions } from 'node:tls';
import type { TlsMaterial } from './tls-material.js';
import { UNLIMITED_HANDSHAKES, type HandshakeLimiter } from './handshake-limit.js';

/** Called with the new material after every successful replace(). */
export type TlsMaterialListener = (material: TlsMaterial) => void;

/**
 * The one holder of the TLS material in use. It is itself a TlsMaterial whose fields always read
 * the current set, so code that keeps a reference (a session about to answer STLS, the SNI
 * callback) sees a reload without being told; listeners that copied options at bind time (the
 * implicit-TLS servers) subscribe with onReplace() and call server.setSecureContext().
 * Connections already established keep the context they shook hands with.
 */
export class TlsProvider implements TlsMaterial {
  #material: TlsMaterial;
  readonly #listeners = new Set<TlsMaterialListener>();
  /** Shared by the implicit-TLS listeners and STLS upgrades (set by startPopwarden). */
  handshakes: HandshakeLimiter = UNLIMITED_HANDSHAKES;

  constructor(material: TlsMaterial) {
    this.#material = material;
  }

  /** Wraps plain material once, so every caller can rely on a provider. */
  static from(material: TlsMaterial | TlsProvider): TlsProvider {
    return material instanceof TlsProvider ? material : new TlsProvider(material);
  }

  /** The material in use right now. */
  get current(): TlsMaterial {
    return this.#material;
  }

  get secureContext(): SecureContext {
    return this.#material.secureContext;
  }

  get serverOptions(): TlsOptions {
    return this.#material.serverOptions;
  }

  get certificates(): NonNullable<TlsMaterial['certificates']> {
    return this.#material.certificates ?? [];
  }

  get ticketKeys(): Buffer | undefined {
    return this.#material.ticketKeys;
  }

  get files(): readonly string[] {
    return this.#material.files ?? [];
  }

  readonly beginHandshake = (address: string, evict?: () => void): (() => void) | undefined => this.handshakes.begin(address, evict);

  /** SNI lookup in the current set; undefined means the default context. */
  readonly contextFor = (servername: string): SecureContext | undefined => this.#material.contextFor?.(servername);

  /**
   * Node's SNICallback: the context for the name, or the current default. The default matters on
   * STLS sockets, whose secureContext was fixed when the TLSSocket was made.
   */
  readonly sniCallback = (servername: string, callback: (error: Error | null, context?: SecureContext) => void): void => {
    callback(null, this.contextFor(servername) ?? this.#material.secureContext);
  };

  /** Swaps in a complete new set (already loaded and checked) and tells the subscribers. */
  replace(material: TlsMaterial): void {
    this.#material = material;
    for (const listener of this.#listeners) listener(material);
  }

  /** Subscribes to replace(); returns the unsubscribe function. */
  onReplace(listener: TlsMaterialListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
