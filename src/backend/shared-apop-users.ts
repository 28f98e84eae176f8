/**
 * How each user logs in to a backend that offers APOP (apop-users.ts), shared by every instance
 * through Redis: otherwise a guesser who reaches the instance that has not seen alice log in gets
 * back the cleartext retry that tests one guess against two secrets. One key per backend and
 * user, `PREFIX:apopuser:HMAC`, named by an HMAC of both under the limiter's key (Redis sees no
 * username), holding "apop" or "cleartext", expiring a day after the success that wrote it
 * (REMEMBERED_APOP_USER_MS). Successful logins write, and a retry in clear that was refused too
 * writes "retry-refused" for an hour (CLEARTEXT_ONLY_AFTER_REFUSED_RETRY_MS) under a key of its
 * own, named by backend, user and client address (apop-users.ts says why), so the keys are
 * bounded by the real users who logged in within a day and the user+address pairs guessed at
 * within the hour (guesses the limits let through). The process's own ApopUsers is written too and answers alone
 * while Redis is down.
 */
import { CLEARTEXT_ONLY_AFTER_REFUSED_RETRY_MS, REMEMBERED_APOP_USER_MS } from '../config/limits.js';
import type { UsernameCanonical } from '../config/types.js';
import { canonicalUser } from '../auth/rate-limit/keys.js';
import { ipKey } from '../net/addresses.js';
import { SHARED_KEY_KINDS, type SharedRedis } from '../auth/rate-limit/shared-redis.js';
import { REFUSED_RETRY_IPV6_PREFIX, type ApopUserKind, type ApopUsers } from './apop-users.js';

/** What the backend login asks and tells; ApopUsers alone, or with Redis. */
export interface ApopMemory {
  /** `from`: the client's address ('retry-refused' is kept per user and address). */
  get(backend: string, user: string, from: string): ApopUserKind | undefined | Promise<ApopUserKind | undefined>;
  remember(backend: string, user: string, kind: ApopUserKind, from: string): void | Promise<void>;
  /** Whether some user logged in to `backend` in clear after a refused APOP (ApopUsers.cleartextWorks). */
  cleartextWorks(backend: string): boolean;
}

const isSuccess = (value: string | null | undefined): value is 'apop' | 'cleartext' => value === 'apop' || value === 'cleartext';

export class SharedApopUsers implements ApopMemory {
  constructor(
    readonly local: ApopUsers,
    private readonly shared: SharedRedis,
    private readonly accounts: UsernameCanonical,
    private readonly ttlMs = REMEMBERED_APOP_USER_MS,
    private readonly refusedRetryMs = CLEARTEXT_ONLY_AFTER_REFUSED_RETRY_MS,
  ) {}

  #key(backend: string, user: string): string {
    return this.shared.key(SHARED_KEY_KINDS.apopUser, this.shared.hashedId(backend, canonicalUser(user, this.accounts)));
  }

  #refusedKey(backend: string, user: string, from: string): string {
    const id = this.shared.hashedId(backend, canonicalUser(user, this.accounts), ipKey(from, REFUSED_RETRY_IPV6_PREFIX));
    return this.shared.key(SHARED_KEY_KINDS.apopUser, id);
  }

  async get(backend: string, user: string, from: string): Promise<ApopUserKind | undefined> {
    const key = this.#key(backend, user);
    const refusedKey = this.#refusedKey(backend, user, from);
    // Issued in one tick (auto-pipelining); two GETs, not an MGET: on a Cluster the keys' slots differ.
    const values = await this.shared.attempt('APOP users', (client) => Promise.all([client.get(key), client.get(refusedKey)]));
    if (values === undefined) return this.local.get(backend, user, from);
    const [success, refused] = values;
    if (isSuccess(success)) return success;
    return refused === 'retry-refused' ? refused : undefined;
  }

  cleartextWorks(backend: string): boolean {
    return this.local.cleartextWorks(backend);
  }

  async remember(backend: string, user: string, kind: ApopUserKind, from: string): Promise<void> {
    this.local.remember(backend, user, kind, from);
    // A refused retry has a key of its own, so it never replaces what a success taught another
    // instance, and a success's key is read first (get).
    await this.shared.attempt('APOP users', (client) =>
      kind === 'retry-refused'
        ? client.set(this.#refusedKey(backend, user, from), kind, 'PX', this.refusedRetryMs)
        : client.set(this.#key(backend, user), kind, 'PX', this.ttlMs),
    );
  }
}
