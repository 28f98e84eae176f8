/**
 * `popwarden cert generate --host NAME [--host NAME...] [--days N] [--out DIR]`: a self-signed
 * certificate and key for a test or an internal deployment, made the same way as the first-run
 * pair (node-forge signs, Node makes the key).
 */
import { access } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { CERT_FILE_NAME, KEY_FILE_NAME, generateSelfSigned, writeCertificatePair } from './self-signed.js';

export interface CertCliIo {
  out(text: string): void;
  err(text: string): void;
}

export const CERT_USAGE = `Usage: popwarden cert generate --host NAME [--host NAME...] [--days N] [--out DIR]

Writes DIR/cert.pem and DIR/key.pem (mode 0600): a self-signed certificate with a
subjectAltName for every --host (a DNS name or an IP address; the first is also the CN),
serverAuth extended key usage, SHA-256 signature.

The key is RSA 2048: node-forge, which signs the certificate, cannot make ECDSA certificates.
For ECDSA, or a certificate clients trust without a warning, use your CA or ACME client and
point cert/key at its files.

  --host NAME   a name clients connect to (repeat it for more names)
  --days N      validity in days, 1..825 (default 365)
  --out DIR     where to write (default: the current directory); existing files are not overwritten
`;

const HOST_NAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** Runs `popwarden cert ...`; resolves the exit status (0 ok, 1 failure, 2 usage error). */
export async function runCertCli(argv: readonly string[], io: CertCliIo): Promise<number> {
  if (argv[0] !== 'generate' || argv.includes('--help') || argv.includes('-h')) {
    (argv[0] === 'generate' || argv[0] === undefined || argv[0] === '--help' ? io.out : io.err)(CERT_USAGE);
    return argv[0] === 'generate' || argv[0] === '--help' || argv[0] === '-h' ? 0 : 2;
  }
  let values: { host?: string[]; days?: string; out?: string };
  try {
    ({ values } = parseArgs({
      args: [...argv.slice(1)],
      options: { host: { type: 'string', multiple: true }, days: { type: 'string' }, out: { type: 'string' } },
      strict: true,
    }));
  } catch (error) {
    io.err(`popwarden cert generate: ${(error as Error).message}\n${CERT_USAGE}`);
    return 2;
  }
  const hosts = values.host ?? [];
  if (hosts.length === 0) {
    io.err(`popwarden cert generate: give at least one --host\n${CERT_USAGE}`);
    return 2;
  }
  const bad = hosts.find((host) => isIP(host) === 0 && !HOST_NAME.test(host));
  if (bad !== undefined) {
    io.err(`popwarden cert generate: --host ${JSON.stringify(bad)} is neither a DNS name nor an IP address\n`);
    return 2;
  }
  const days = values.days === undefined ? 365 : Number(values.days);
  if (!Number.isInteger(days) || days < 1 || days > 825) {
    io.err('popwarden cert generate: --days must be a whole number from 1 to 825\n');
    return 2;
  }
  const dir = resolve(values.out ?? '.');
  for (const name of [CERT_FILE_NAME, KEY_FILE_NAME]) {
    if (await exists(join(dir, name))) {
      io.err(`popwarden cert generate: ${join(dir, name)} exists; remove it or choose another --out\n`);
      return 1;
    }
  }
  try {
    const pair = await generateSelfSigned(hosts, new Date(), days * 86_400_000);
    const files = await writeCertificatePair(dir, pair);
    const cert = new X509Certificate(pair.certPem);
    io.out(`wrote ${files.certFile} and ${files.keyFile} (mode 0600)\nSHA-256 fingerprint ${cert.fingerprint256}\nvalid until ${cert.validTo}\n`);
    return 0;
  } catch (error) {
    io.err(`popwarden cert generate: ${(error as Error).message}\n`);
    return 1;
  }
}
