/**
 * The --help text, generated from the schema keys so it can never miss one.
 */
import { NEGATIVE_PREFIX } from './argv.js';
import { CONFIG_KEYS, type ConfigKey } from './schema-keys.js';

function placeholder(key: ConfigKey): string {
  if (key.kind === 'boolean') return '';
  if (key.kind === 'integer') return ' N';
  if (key.choices !== undefined) return ` ${key.choices.join('|')}`;
  if (key.name === 'rate_limit.allow' || key.name === 'rate_limit.deny') return ' CIDR';
  // Mappings and lists of mappings are written in the config file (a flag would need YAML).
  if (key.name === 'backends' || key.name === 'routing.routes' || key.name === 'tls.certificates') return ' (config file)';
  if (key.name === 'tls.server_names') return ' NAME';
  if (key.name === 'backend') return ' HOST:PORT|unix:PATH|exec:PROGRAM';
  if (key.kind === 'list') return ' HOST:PORT';
  if (key.name === 'metrics_listen') return ' HOST:PORT|off';
  if (key.name === 'backend_probe_interval') return ' DURATION';
  if (key.name === 'routing.auth_http.timeout') return ' DURATION';
  if (key.path.at(0) === 'timeouts' || key.name === 'auth_failure_delay') return ' DURATION';
  if (/(window|block|trusted_for|_timeout)$/.test(key.name)) return ' DURATION';
  if (key.name === 'redis.sentinels' || key.name === 'redis.cluster') return ' HOST:PORT';
  const named: Record<string, string> = {
    'redis.url': 'URL',
    'redis.password_file': 'FILE',
    'rate_limit.hmac_key_file': 'FILE', 'tls.pfx': 'FILE', 'tls.pfx_passphrase_file': 'FILE', 'tls.ticket_keys_file': 'FILE', cert: 'FILE', key: 'FILE', backend_ca: 'FILE', backend_tls_cert: 'FILE', backend_tls_key: 'FILE', state_dir: 'DIR', backend_tls_servername: 'NAME', backend_source_address: 'IP', greeting: 'TEXT',
    'routing.map_file': 'FILE', 'routing.redis_key': 'KEY', 'routing.auth_http.url': 'URL', 'routing.default': 'NAME',
    'routing.auth_http.unlisted_backend_template': 'NAME' };
  return ` ${named[key.name] ?? 'VALUE'}`;
}

/** --help text, generated from the schema so it can never miss a key. */
export function usage(): string {
  const lines = CONFIG_KEYS.map((key) => {
    const left = `  --${key.flag}${placeholder(key)}`;
    const negative = key.kind === 'boolean' ? ` (or --${NEGATIVE_PREFIX}${key.flag})` : '';
    const repeat = key.kind === 'list' ? ' (repeatable, or comma-separated)' : '';
    const fallback = key.defaultValue === undefined ? '' : ` default ${JSON.stringify(key.defaultValue)}`;
    return `${left.padEnd(44)} ${key.env}${negative}${repeat}${fallback}`;
  });
  return [
    'Usage: popwarden [--config FILE] [options]',
    '       popwarden cert generate --host NAME [--host NAME...] [--days N] [--out DIR]   (RSA 2048 self-signed; --help for more)',
    '       popwarden ratelimit status|unblock|list ...',
    '       popwarden backend show|forget ADDRESS [--state-dir DIR]   (what each backend offered before)',
    '',
    'SIGHUP (systemctl reload) re-reads the config and the certificates; SIGTERM drains for timeouts.shutdown.',
    '',
    'A TLS front-end for legacy plaintext POP3 servers.',
    '',
    '  -c, --config FILE                          YAML config file (keys as below, snake_case; nested as timeouts: {idle: 10m})',
    '  -t, --check-config                         validate the config and the files it names, print it (secrets masked), exit',
    '  -h, --help                                 this text',
    '      --redis URL                            the same as --redis-url',
    '      --version                              print the version',
    '',
    'Every config key is also a flag and an environment variable (precedence: flag > env > file > default).',
    'Durations need a unit: 500ms, 2s, 10m, 1h (only a bare 0 needs none). Addresses are HOST:PORT, IPv6 as [::1]:995.',
    '',
    ...lines,
    '',
  ].join('\n');
}
