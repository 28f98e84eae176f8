/**
 * Referenced files (certificates, keys, CA bundles, secrets) checked to exist and be readable at
 * load time, in run and --check-config mode alike: fail at start, not at the first TLS handshake
 * or backend STLS.
 */
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { ConfigError, fail } from './config-error.js';
import { backendKey, type BackendSetting } from './backend-keys.js';
import type { Config } from './types.js';

function checkReadableFile(path: string | undefined, keyName: string, remedy: string): void {
  if (path === undefined) return;
  try {
    if (!statSync(path).isFile()) fail(`${keyName} ${path} is not a regular file; ${remedy}`);
    accessSync(path, fsConstants.R_OK);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    const reason =
      code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? `is not readable by this user (uid ${process.getuid?.() ?? '?'})` : `cannot be read (${code ?? 'error'})`;
    fail(`${keyName} ${path} ${reason}; ${remedy}`);
  }
}

export function checkReferencedFiles(config: Config): void {
  const certRemedy = 'fix the path, or remove cert and key to use a generated self-signed certificate';
  checkReadableFile(config.tls.certFile, 'cert', certRemedy);
  checkReadableFile(config.tls.keyFile, 'key', certRemedy);
  checkReadableFile(config.tls.pfxFile, 'tls.pfx', 'fix the path, or remove tls.pfx');
  checkReadableFile(config.tls.pfxPassphraseFile, 'tls.pfx_passphrase_file', 'fix the path, or remove the key for an empty passphrase');
  config.tls.certificates.forEach((entry, index) => {
    const remedy = 'fix the path, or remove that entry of tls.certificates';
    checkReadableFile(entry.certFile, `tls.certificates[${index}].cert`, remedy);
    checkReadableFile(entry.keyFile, `tls.certificates[${index}].key`, remedy);
  });
  for (const backend of config.backends) {
    const key = (setting: BackendSetting): string => backendKey(backend, setting);
    const certRemedy = `fix the path, or remove ${key('tls_cert')} and ${key('tls_key')}`;
    checkReadableFile(backend.caFile, key('ca'), `fix the path, or remove ${key('ca')} to use the bundled CA list`);
    checkReadableFile(backend.clientCertFile, key('tls_cert'), certRemedy);
    checkReadableFile(backend.clientKeyFile, key('tls_key'), certRemedy);
  }
  checkReadableFile(config.routing.mapFile, 'routing.map_file', 'fix the path, or remove routing.map_file');
  checkReadableFile(config.redis.passwordFile, 'redis.password_file', 'fix the path, or remove the key');
  checkReadableFile(
    config.rateLimit.hmacKeyFile,
    'rate_limit.hmac_key_file',
    'fix the path, or remove the key to have popwarden generate one in state_dir',
  );
}
