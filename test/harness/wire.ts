/**
 * What a client sees on the wire below the POP3 bytes: whether the server's socket has
 * TCP_NODELAY, and how a TLS byte stream is cut into records. For the guards against Nagle
 * stalls (issue 10), which must hold without measuring any time.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HELPER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'tcp_nodelay.py');

/**
 * Whether process `pid` has TCP_NODELAY set on its socket bound to `localPort` and connected to
 * `peerPort` on loopback, as the kernel reports it (getsockopt on a borrowed descriptor).
 */
export function tcpNoDelay(pid: number, localPort: number, peerPort: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    execFile('python3', [HELPER, String(pid), String(localPort), String(peerPort)], (error, stdout, stderr) => {
      if (error !== null) reject(new Error(`tcp_nodelay.py: ${stderr.trim() || error.message}`));
      else resolve(stdout.trim() === '1');
    });
  });
}

/** One TLS record: its content type (23 = application data) and where it starts in the stream. */
export interface TlsRecord {
  readonly type: number;
  readonly offset: number;
  readonly length: number;
}

/**
 * Cuts a TLS byte stream (starting at a record boundary) into records (RFC 8446 §5.1: type,
 * version, 16-bit length). A record still incomplete at the end is left out.
 */
export function tlsRecords(stream: Buffer): TlsRecord[] {
  const records: TlsRecord[] = [];
  let at = 0;
  while (at + 5 <= stream.length) {
    const length = stream.readUInt16BE(at + 3);
    if (at + 5 + length > stream.length) break;
    records.push({ type: stream[at]!, offset: at, length });
    at += 5 + length;
  }
  if (at < stream.length && stream.length - at >= 5 && ![20, 21, 22, 23].includes(stream[at]!)) {
    throw new Error(`not a TLS record at offset ${at}`);
  }
  return records;
}
