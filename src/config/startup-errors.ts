/**
 * The one stderr line popwarden prints when it cannot start. Operators read it in `journalctl` or
 * a terminal, so it says what failed and what to change, never a stack trace.
 */
import { TlsMaterialError } from '../tls/material-error.js';
import { ConfigError } from './config-error.js';
import { formatHostPort } from './values.js';

/** Ports below this need root or CAP_NET_BIND_SERVICE on Linux. */
const FIRST_UNPRIVILEGED_PORT = 1024;

interface SystemError extends Error {
  readonly code?: string;
  readonly syscall?: string;
  readonly address?: string;
  readonly port?: number;
  readonly path?: string;
}

function isSystemError(error: unknown): error is SystemError {
  return error instanceof Error && typeof (error as SystemError).code === 'string';
}

function describeListenError(error: SystemError): string | undefined {
  if (error.syscall !== 'listen' && error.syscall !== 'bind') return undefined;
  const port = error.port ?? 0;
  const where = error.address === undefined ? `port ${port}` : formatHostPort({ host: error.address, port });
  switch (error.code) {
    case 'EADDRINUSE':
      return `cannot listen on ${where}: address already in use; stop whatever holds it or change listen_tls/listen_stls`;
    case 'EACCES':
      return port > 0 && port < FIRST_UNPRIVILEGED_PORT
        ? `cannot listen on ${where}: permission denied; a port below 1024 needs CAP_NET_BIND_SERVICE (see README, systemd unit) or a port above 1023`
        : `cannot listen on ${where}: permission denied`;
    case 'EADDRNOTAVAIL':
      return `cannot listen on ${where}: no such address on this host; fix listen_tls/listen_stls`;
    default:
      return `cannot listen on ${where}: ${error.code ?? error.message}`;
  }
}

function describeFileError(error: SystemError): string | undefined {
  if (error.path === undefined) return undefined;
  const reason = error.code === 'EACCES' || error.code === 'EPERM' ? 'permission denied' : (error.code ?? error.message);
  return `cannot ${error.syscall ?? 'access'} ${error.path}: ${reason}; check state_dir (or STATE_DIRECTORY) and file permissions`;
}

/** One line, prefixed "popwarden: ", for any error that stopped startup. */
export function startupErrorLine(error: unknown): string {
  let text: string;
  if (error instanceof ConfigError) text = error.message;
  else if (error instanceof TlsMaterialError) text = `tls: ${error.message}`;
  else if (isSystemError(error)) text = describeListenError(error) ?? describeFileError(error) ?? `${error.code}: ${error.message}`;
  else text = `unexpected startup error: ${error instanceof Error ? error.message : String(error)}`;
  return `popwarden: ${text.replace(/\s*[\r\n]+\s*/g, ' ')}`;
}
