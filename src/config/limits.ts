/**
 * Every protocol limit popwarden enforces, with the reason it has the value it has. Limits an
 * operator may want to tune live in the config schema instead (timeouts, invalid-command budget);
 * these are fixed by the RFCs or by the memory bound we promise. One exported constant each, not
 * one table object, so that every import names the limit its code depends on: the repeated shape
 * below is the list itself, not a copy.
 */

/** RFC 2449 §4: "commands up to 255 octets" including the CRLF. A client line longer than this is refused. */
export const MAX_COMMAND_LINE_OCTETS = 255;

/**
 * RFC 2449 §4: before it, the longest command was 47 octets ("4 character command, single
 * space, 40 character argument, CRLF"), and only servers that answer CAPA must take 255. A
 * backend without CAPA (popa3d, solid-pop3d) gets no longer line from the relay.
 */
export const MAX_RFC1939_COMMAND_LINE_OCTETS = 47;

/**
 * RFC 5034 §4 lets an AUTH continuation line exceed the command limit; PLAIN carries up to three
 * 255-octet fields (RFC 4616 §2), which base64 makes 1,024 octets. RFC 4954 calls 12,288 enough for
 * any SASL line; we need far less and keep the bound tight.
 */
export const MAX_SASL_LINE_OCTETS = 1_100;

/** RFC 4616 §2: authzid, authcid and password each "up to 255 octets". */
export const MAX_CREDENTIAL_FIELD_OCTETS = 255;

/** RFC 2449 §4: a response's first line is at most 512 octets including CRLF. Longer is a broken backend. */
export const MAX_RESPONSE_LINE_OCTETS = 512;

/**
 * Lines of a multi-line reply that popwarden must read whole (CAPA during the backend login and
 * CAPA after login, which it rewrites). Relayed bodies (RETR, TOP, LIST, UIDL) are streamed and have
 * no line limit at all.
 */
export const MAX_CAPA_LINES = 64;

/**
 * RFC 1939 §7 does not bound the APOP timestamp; RFC 822 msg-ids in practice stay well under 100
 * octets (Dovecot's are about 50). Anything longer is treated as hostile (CVE-2007-1558).
 */
export const MAX_APOP_TIMESTAMP_OCTETS = 128;

/**
 * Lines a client may pipeline ahead of the command being served before popwarden stops reading its
 * socket. Backpressure, not an error: the client just waits for TCP.
 */
export const MAX_QUEUED_CLIENT_LINES = 32;

/** Backend error text forwarded to operators' logs is cut to this many characters. */
export const MAX_LOGGED_BACKEND_TEXT = 200;

/** RFC 1939 §3: the autologout timer "MUST be of at least 10 minutes' duration". */
export const MIN_IDLE_TIMEOUT_MS = 10 * 60 * 1000;

/**
 * On SIGTERM, how long commands in flight (a RETR under way) may run before the remaining
 * sessions are closed: the default of timeouts.shutdown. Below systemd's TimeoutStopSec (60s in
 * contrib/popwarden.service).
 */
export const SHUTDOWN_DRAIN_MS = 20_000;

/**
 * Default of timeouts.backend_auth: the backend's replies once credentials are on their way.
 * Above Dovecot's largest auth penalty (15 s, AUTH_PENALTY_MAX_SECS) plus its failure delay
 * (2 s), so that a penalised but correct login is answered rather than timed out.
 */
export const BACKEND_AUTH_TIMEOUT_MS = 30_000;

/** timeouts.shutdown may not reach systemd's TimeoutStopSec=60s: 10 s are left for closing sessions and exiting. */
export const MAX_SHUTDOWN_MS = 50_000;

/**
 * On shutdown, once the sessions are closed, how long the failed-login protection waits for the
 * logins still under way to settle their reservations before it closes the store (Redis). A
 * failure waiting for its auth_failure_delay settles at once then (FailureDeadline.endWaits), so
 * this bounds what cannot be hurried: a store round trip, a login still at its backend (up to
 * timeouts.backend_auth). A login that outlasts it leaves its place counted until its window
 * ends, as a crash would. Within the 10 s MAX_SHUTDOWN_MS leaves for closing and exiting.
 */
export const SHUTDOWN_SETTLE_MS = 5_000;

/**
 * Default of limits.max_commands_before_login: commands one connection may send before it has
 * logged in. A real client needs a handful (CAPA, STLS, CAPA, USER, PASS; AUTH and a retry or
 * two), and a failed login costs it auth_failure_delay each; a connection that sends 5,000 CAPA
 * in one write only spends popwarden's CPU (issue 14.3). OpenSMTPD kicks a session after 50
 * commands that make no progress (SMTP_KICK_THRESHOLD); this counts every command before login,
 * so it is the same order with room to spare.
 */
export const DEFAULT_MAX_COMMANDS_BEFORE_LOGIN = 50;

/**
 * Default of limits.max_new_connections_per_ip_per_minute: one a second on average, under the
 * burst of limits.max_new_connections_per_ip (10 in a second). Each connection to the TLS port
 * (and each STLS) costs a full handshake, about 1 ms of CPU, so a flood kept up from 64 addresses
 * costs 64 handshakes a second instead of 640 (issue 14.3). A person's client opens one connection
 * per account and check; an office or a carrier NAT with a hundred users behind one address,
 * each checking every five minutes, needs 20 a minute. Larger shared addresses belong in
 * rate_limit.allow.
 */
export const DEFAULT_MAX_NEW_CONNECTIONS_PER_IP_PER_MINUTE = 60;

/**
 * Default of limits.max_protocol_errors_per_ip_per_hour: sessions from one address that may end
 * in a protocol error (a line past its bound, too many invalid commands or commands before login,
 * another protocol on the port) in any hour, ten at once and then one every six minutes. No POP3
 * client ends a session that way in normal use, and one that does because it is broken ends every
 * session so: ten an hour still shows it in the log. Past it the address is refused at accept,
 * before its TLS handshake; under the oversized-SASL attack each such session had cost a full
 * handshake and 64 KiB of decryption, 50 addresses 3,000 of them in the attack's first six seconds
 * (issue 14.3). Returning clients are never refused by it.
 */
export const DEFAULT_MAX_PROTOCOL_ERRORS_PER_IP_PER_HOUR = 10;

/**
 * A returning client's address (a login succeeded from it within rate_limit.trusted_for) may end
 * this many times more sessions in a protocol error: a carrier or office NAT with one broken
 * client among many users keeps working (a client polling every five minutes ends 12 sessions an
 * hour), while one login with any account does not buy an address an unbounded oversized-SASL
 * flood (issue 14.3; a review found the exemption it had before).
 */
export const RETURNING_PROTOCOL_ERRORS_FACTOR = 10;

/**
 * Addresses whose connection rate over the last minute popwarden remembers. About 100 bytes each,
 * so 10 MB at the bound; past it the address used longest ago is forgotten (it gets a fresh
 * minute). A spread over more addresses than this gets little from a per-address bound anyway.
 */
export const MAX_RATE_TRACKED_ADDRESSES = 100_000;

/**
 * Refusals by a per-address connection rate are logged once per address and window, with the
 * number refused quietly since the line before (net/refusal-bursts.ts): a flood must not turn
 * every refused connection into a log line. A minute matches the rate's own window; 10,000
 * addresses in a minute is 20,000 lines at most (each burst's first line and its tail), and
 * about 1 MB of table.
 */
export const REFUSAL_LOG_WINDOW_MS = 60_000;
export const MAX_REFUSAL_LOG_ADDRESSES = 10_000;

/** Default of limits.max_handshakes_per_ip: TLS handshakes in progress from one address. */
export const DEFAULT_MAX_HANDSHAKES_PER_IP = 10;

/**
 * Default of limits.max_sessions: client connections open at once, the whole process. A proxied
 * session holds two file descriptors (client and backend), so the bound needs
 * 2 × max_sessions + DESCRIPTOR_RESERVE descriptors: 10,320 for 5,000. Node raises its soft
 * `ulimit -n` to the hard limit at start; systemd's hard default is 524,288, a login shell's is
 * often 1,048,576 or as low as 4,096. Without this bound, the limit popwarden runs into is the
 * descriptor limit, where accept() fails with EMFILE and clients are dropped without a word.
 */
export const DEFAULT_MAX_SESSIONS = 5_000;

/**
 * Default of limits.max_handshakes: TLS handshakes in progress, the whole process. A handshake
 * costs a private-key operation (about 1 ms of CPU for RSA-2048); 256 in flight at a round trip of
 * 100 ms is over 2,500 handshakes a second, more than a core signs, so the bound does not hold
 * back a load the CPU could serve while it bounds the memory of stalled handshakes.
 */
export const DEFAULT_MAX_HANDSHAKES = 256;

/**
 * When limits.max_handshakes or limits.max_sessions is full, the oldest connection that has not
 * got anywhere (a handshake in progress; a session not logged in) is closed to make room for the
 * new one, as Dovecot's login processes do (client_destroy_oldest): otherwise a slowloris from
 * enough addresses holds the bound for a whole timeout and locks everyone out. Only connections
 * at least this old qualify: a legitimate handshake or login takes milliseconds, so one second
 * leaves it alone while a stalled one is fair game; without the floor an attacker's fast flood
 * would evict legitimate clients in the middle of their handshakes, and it is refused instead.
 */
export const EVICTION_MIN_AGE_MS = 1_000;

/**
 * The last 1/16 of limits.max_handshakes and of limits.max_sessions is kept for returning clients
 * (addresses a login succeeded from lately, net/returning-clients.ts), as ext4 keeps blocks for
 * root: everyone else is bounded at 15/16. The age floor above leaves a bound filled within one
 * second with nothing to evict, and a slowloris fills 256 handshakes in milliseconds; without the
 * reserve the owner, arriving in that second, met a bare close (issue 14.3). The bounds
 * themselves (memory, descriptors) do not move.
 */
export const RETURNING_CLIENTS_SHARE_DIVISOR = 16;

/**
 * One account holds at most a quarter of that kept share (at least one place): a returning
 * client's place there is counted to the account whose login made its address returning. Anyone
 * with one password can log in from many addresses and make each returning; counted per address,
 * they would fill the share and lock the owner out again. A quarter leaves an owner's few devices
 * room (4 of the 16 handshakes, 78 of the 312 sessions by default), and takes four accounts to fill.
 */
export const RETURNING_ACCOUNT_SHARE_DIVISOR = 4;

/**
 * Addresses (IPv6: networks) remembered as returning clients, each with the account that last
 * logged in from it. Only successful logins add one, so this bounds real users' addresses, not
 * what an attacker without a password can write; past it the address whose last login is oldest
 * goes. About 100 octets an entry, with a username: 2 MB.
 */
export const MAX_RETURNING_CLIENT_ADDRESSES = 10_000;

/**
 * Default of limits.max_backend_processes: legacy servers (`exec:` backends) running at once. Each
 * is a whole process (a few MB of memory, a fork and an exec at login): 100 serves a mid-sized
 * host's peak of simultaneous fetches while a login flood stays far from the process table limit.
 */
export const DEFAULT_MAX_BACKEND_PROCESSES = 100;

/**
 * Default of limits.max_backend_logins_per_ip: programs of an `exec:` backend that one client
 * address (IPv6: its rate_limit.ipv6_prefix network) may hold while their login is still in
 * progress, as xinetd's `per_source` bounds one source's instances. A wrong password holds its
 * program through the backend's failure delay (pam_unix: 2 s), so without a share a few
 * addresses sending wrong passwords in parallel would hold every place of max_backend_processes.
 * A mail client logs in one connection at a time, and a login the backend accepts takes
 * milliseconds: five leaves room for many clients behind one NAT address.
 */
export const DEFAULT_MAX_BACKEND_LOGINS_PER_IP = 5;

/**
 * When its session ends, a backend program gets this long to exit on its own before SIGTERM: it
 * has read EOF on its socket, and a server that answered QUIT before it finished rewriting the
 * mailbox (RFC 1939 §6 says it should not, not all do) must not be cut off in the middle of the
 * write. Servers that are idle exit at once on EOF.
 */
export const BACKEND_PROCESS_EXIT_GRACE_MS = 5_000;

/**
 * The same grace for a program whose login did not succeed (refused, timed out, or its place given
 * to another login): it has no mailbox to write, so it gets SIGTERM this soon rather than hold a
 * place of max_backend_processes for the whole exit grace. Servers exit at once on EOF; this only
 * ends the ones that do not (a server still in its failure delay, a tarpit).
 */
export const BACKEND_LOGIN_EXIT_GRACE_MS = 250;

/** After SIGTERM, this long before SIGKILL: bounds a program that ignores both EOF and SIGTERM. */
export const BACKEND_PROCESS_KILL_GRACE_MS = 2_000;

/**
 * What a backend program's stderr may put into the log: this many octets per child (the rest is
 * counted, not kept), and this many stderr log lines per minute for the whole process, so a
 * chatty or hostile server cannot flood the log or memory.
 */
export const MAX_BACKEND_STDERR_OCTETS = 2_048;
export const MAX_BACKEND_STDERR_LINES_PER_MINUTE = 60;

/**
 * A connection refused at accept for its address's rate (per second, per minute, protocol errors)
 * on the TLS port is held this long before its bare close (net/refusal-hold.ts), at most this many
 * at once; past that, refusals close at once. A flood that reconnects the moment it is closed
 * then makes one attempt a second per connection in flight, not one per round trip (issue 14.3:
 * 2,000 a second from 50). A client refused there gets no POP3 line either way, and one that is
 * only over its rate (a NAT) waits a second more before it retries.
 */
export const REFUSAL_HOLD_MS = 1_000;
export const MAX_HELD_REFUSALS = 256;

/**
 * Descriptors that are not sessions: stdio, listeners, Redis, the metrics server, files, libuv's
 * own (about 25 in all), and the refusals held (MAX_HELD_REFUSALS).
 */
export const DESCRIPTOR_RESERVE = 64 + MAX_HELD_REFUSALS;

/**
 * Keys the in-memory failed-login store holds per kind (counters, trusted pairs, repeated-password
 * sets): without Redis, and as the insurance while Redis is down. Measured at 350 bytes of heap a
 * key (a repeated-password set is the heaviest), so the three kinds stay near 50 MB however many
 * usernames and addresses a spray uses; past the bound the oldest keys make room. Redis has its
 * own memory policy (maxmemory).
 */
export const MAX_MEMORY_LIMIT_KEYS = 50_000;

/**
 * Users remembered per backend as logging in with APOP or in clear (backend/apop-users.ts). Only
 * successful logins add one, so this is a bound on real users, not on what guessing can write;
 * at about 200 octets an entry, 10,000 is 2 MB.
 */
export const MAX_REMEMBERED_APOP_USERS = 10_000;

/**
 * How long such an entry lasts after the login that wrote it: long enough to cover a user's
 * daily logins, short enough that a user whose APOP secret was removed gets the cleartext retry
 * again the next day.
 */
export const REMEMBERED_APOP_USER_MS = 24 * 60 * 60 * 1000;

/**
 * How long, after APOP and the cleartext retry both refused one password for a user popwarden did
 * not know, that user is tried in clear only (no APOP, no retry) from the same client address,
 * until a login succeeds: the retry exists for users without an APOP secret, and after the first
 * refused pair each further wrong guess from there costs the backend one failure, not two (a
 * backend that locks a user after N failures, pam_faillock counting 15 minutes, would otherwise
 * lock them twice as fast as popwarden's limits count). Per address, because a user whose APOP
 * secret differs from their system password and who is not remembered (no login for a day)
 * cannot log in in clear: a mark any address could set would let one guess an hour lock them
 * out. It matches rate_limit.user's window rather than a day.
 */
export const CLEARTEXT_ONLY_AFTER_REFUSED_RETRY_MS = 60 * 60 * 1000;

/** proxy-protocol.txt §2.1: "a receiver ... can read at most 107 bytes" for a v1 line, CRLF included. */
export const MAX_PROXY_V1_OCTETS = 107;

/**
 * A whole v2 header, 16 fixed octets included. The format allows 16 + 65,535; §2.2 asks a receiver
 * to take at least 536 (one minimal TCP segment), and HAProxy's optional TLVs (SSL details, unique
 * id, authority) stay well under 2 KiB. A header is buffered before anything else on the
 * connection, so this is also the most a pending proxied connection can hold.
 */
export const MAX_PROXY_V2_OCTETS = 2_048;

/**
 * How long Redis keeps what a backend offered (backend/shared-memory.ts) after the last login
 * that saw it: every key under the prefix expires, and a backend popwarden has not logged
 * in to for a quarter is one no instance uses. Each instance's backends.json still remembers.
 */
export const REMEMBERED_OFFER_MS = 90 * 24 * 60 * 60 * 1000;

/**
 * How long a backend's CAPA answer, from a login that used CRAM-MD5 without STLS, stands in for
 * asking again (backend/capability-cache.ts): a CAPA exchange per login is a write, a read and a
 * parse in popwarden and a command in the backend, for an answer that changes only when the
 * backend is reconfigured. After a minute the next login asks again, so a backend that starts
 * offering STLS or drops CRAM-MD5 is seen (and the offer memory judges it) within a minute.
 */
export const CAPABILITIES_REUSE_MS = 60 * 1000;

/**
 * Backend addresses remembered in process memory by the capability cache and by the shared offer
 * memory's refresh times, and in state_dir's backends.json (which refuses a new address past it
 * rather than forget one: forgetting would trust that backend afresh). Routes to unlisted addresses (routing.auth_http.unlisted_backend_template)
 * may name any address the route service likes, so these are not bounded by the configured
 * backends; past the bound the address written longest ago goes, which costs its next login
 * only a CAPA exchange or a PEXPIRE. A few thousand is more backends than one gateway serves,
 * and at most a few hundred KB.
 */
export const MAX_REMEMBERED_BACKEND_ADDRESSES = 4_096;
