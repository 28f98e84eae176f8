/**
 * The limiters that can refuse a login or a connection, by the name logs and metrics use: the
 * three configured ones (rate_limit.user_ip, .ip, .user) and the refusal given while the shared
 * store is down. No imports, so observability can take its label allow-list from here.
 */
export const LIMITER_NAMES_ALL = ['user_ip', 'ip', 'user', 'store_unavailable'] as const;
export type LimiterName = (typeof LIMITER_NAMES_ALL)[number];
