import { MAX_CAPA_LINES, MAX_RESPONSE_LINE_OCTETS } from '../config/limits.js';
import { BackendSentTooMuchError, BackendUnavailableError, ClientStalledError } from '../errors.js';
import type { Command } from '../pop3/grammar.js';
import { statusIndicator } from '../pop3/grammar.js';
import { parseCapabilities, postLoginCapabilities, UNKNOWN_CAPABILITIES } from '../pop3/capabilities.js';
import { Reply, line } from '../pop3/replies.js';
import { hasControlBytes, withoutControlBytes } from '../pop3/control-bytes.js';
import type { Config } from '../config/types.js';
import type { Logger } from '../observability/log.js';
import type { Metrics } from '../observability/metrics.js';
import type { CloseReason } from '../session/close-reasons.js';
import { withoutLineEnding, type BodySink } from '../backend/link.js';
import type { BackendSession } from '../backend/login.js';
import { fitsBackendLine, hasMultilineReply, relayLine } from './policy.js';

/**
 * What the relay needs from the session it serves, declared here so that the relay depends on
 * nothing above it: the session passes itself, and it satisfies this shape.
 */
export interface RelayContext {
  readonly config: Pick<Config, 'timeouts'>;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** The logged-in backend. */
  readonly backend: BackendSession;
  /**
   * Where relayed replies go, with backpressure: false when the client is full. A chunk may be a
   * view valid only during the call (see BodySink). Methods of the session, not a sink object it
   * keeps: an idle session holds nothing for the relay (issue 10.4).
   */
  writeToClient(chunk: Buffer): boolean;
  /** Resolves when the client has drained; rejects if it stalls for too long. */
  clientDrained(): Promise<void>;
}

/**
 * How a relayed command ended: the reply passed on (`replied`), or the session must end, after an
 * optional last line. The session renders it like any handler's outcome (session/outcome.ts).
 */
export type RelayOutcome =
  | { readonly kind: 'replied' }
  | { readonly kind: 'close'; readonly reason: RelayCloseReason; readonly text?: string };

/** The ways a relayed command can end the session (a subset of the session's close reasons). */
export type RelayCloseReason = Extract<
  CloseReason,
  'quit' | 'client-write-stall' | 'backend-timeout' | 'backend-closed' | 'backend-protocol-error'
>;

const replied: RelayOutcome = { kind: 'replied' };
const close = (reason: RelayCloseReason, text?: string): RelayOutcome =>
  text === undefined ? { kind: 'close', reason } : { kind: 'close', reason, text };

/**
 * Serves one client command in the TRANSACTION state, once the command table has checked it:
 * forwards it, relays the status line, and streams a multi-line body straight through. Commands
 * are served one at a time in arrival order, so pipelined replies can never be reordered or
 * shifted (R-08, B-04).
 *
 * If the backend fails before any byte of the reply reached the client, the client gets one
 * -ERR [SYS/TEMP] line; if it fails after, the client connection is closed without the
 * terminating ".", so no client mistakes a truncated message for a whole one (D-01).
 */
export async function relayCommand(command: Command, context: RelayContext, rawLine: Buffer): Promise<RelayOutcome> {
  const outgoing = relayLine(command, rawLine);
  const { link, capabilities } = context.backend;
  // Sent anyway, a line the backend cannot read whole may be answered once per piece (B-04).
  if (!fitsBackendLine(outgoing, capabilities)) {
    context.writeToClient(line(Reply.tooLongForBackend));
    return replied;
  }
  const idleMs = context.config.timeouts.backendIdleMs;
  const started = performance.now();
  const toClient = new CountingSink(context);
  try {
    link.send(outgoing);
    context.metrics.bytesRelayed('to_backend', outgoing.length + 2);
    const statusWire = await link.readRawLine('relay', idleMs, MAX_RESPONSE_LINE_OCTETS);
    const statusBytes = withoutLineEnding(statusWire);
    const ok = statusIndicator(statusBytes);
    if (ok === undefined) {
      throw new BackendUnavailableError('E_BACKEND_PROTOCOL', 'relay', 'reply is neither +OK nor -ERR');
    }
    if (command.verb === 'CAPA') {
      toClient.write(await readCapabilities(ok, context));
    } else if (ok && hasMultilineReply(command)) {
      // The status line leaves in the same write as the body bytes read with it; a small reply
      // read whole with its status line needs no wait at all.
      const streaming = link.streamBody(toClient, idleMs, statusLineForClient(statusWire, statusBytes));
      if (streaming !== undefined) await streaming;
    } else {
      toClient.write(statusLineForClient(statusWire, statusBytes));
      link.replyComplete('relay');
    }
    context.metrics.commandRelayed(command.verb, (performance.now() - started) / 1000);
    return command.verb === 'QUIT' ? close('quit') : replied;
  } catch (error) {
    return endAfterFailure(error, command.verb, toClient.bytes > 0, context);
  } finally {
    context.metrics.bytesRelayed('to_client', toClient.bytes);
  }
}

/**
 * The client as the relay writes to it, counting the bytes: they are reported once per command,
 * not once per chunk, and a failure after the first byte must not add an -ERR to the reply. One
 * small object per command, where a sink of closures would be three.
 */
class CountingSink implements BodySink {
  bytes = 0;
  readonly #context: RelayContext;

  constructor(context: RelayContext) {
    this.#context = context;
  }

  write(chunk: Buffer): boolean {
    this.bytes += chunk.length;
    return this.#context.writeToClient(chunk);
  }

  drained(): Promise<void> {
    return this.#context.clientDrained();
  }
}

/**
 * Ends the session after a relayed command failed. If the backend failed before any byte of the
 * reply reached the client, the client gets one -ERR [SYS/TEMP] line; after that, the connection
 * is closed as it is: never a terminator, never an -ERR spliced into a body (D-01).
 */
function endAfterFailure(error: unknown, verb: string, replyStarted: boolean, context: RelayContext): RelayOutcome {
  if (error instanceof ClientStalledError) return close('client-write-stall');
  if (!(error instanceof BackendUnavailableError)) throw error;
  context.metrics.backendError(error.code);
  context.log.warn({ err: error, code: error.code, verb, replyStarted }, 'backend failed during a command');
  // The reply went out whole and the backend said more: nothing is cut short, so the client
  // learns why the session ends, as it would had the extra line come while it was idle.
  if (error instanceof BackendSentTooMuchError) return close('backend-protocol-error', Reply.backendLost);
  const reason =
    error.code === 'E_BACKEND_TIMEOUT' ? 'backend-timeout' : error.code === 'E_BACKEND_PROTOCOL' ? 'backend-protocol-error' : 'backend-closed';
  return replyStarted ? close(reason) : close(reason, Reply.backendLost);
}

/**
 * CAPA after login: reads the backend's list whole (it is short and bounded) and returns
 * popwarden's version of it. A backend without CAPA still gets popwarden's own lines.
 */
async function readCapabilities(backendOk: boolean, context: RelayContext): Promise<Buffer> {
  const { link } = context.backend;
  const idleMs = context.config.timeouts.backendIdleMs;
  let capabilities = UNKNOWN_CAPABILITIES;
  if (backendOk) {
    capabilities = parseCapabilities(await link.readShortList('relay', idleMs, MAX_CAPA_LINES));
  }
  link.replyComplete('relay');
  return postLoginCapabilities(capabilities);
}

const CRLF = line('').subarray(0, 2);

/**
 * Status lines are the one piece of backend text a client sees after login (message counts,
 * sizes, -ERR reasons). Control bytes are dropped so a hostile backend cannot drive a terminal
 * or a log viewer (S-08); bodies are never touched. A clean line ending in CRLF, the usual
 * case, is passed on as it came (a view, so it can share one write with the body after it).
 */
function statusLineForClient(wire: Buffer, text: Buffer): Buffer {
  if (wire.length === text.length + CRLF.length && !hasControlBytes(text)) return wire;
  return Buffer.concat([withoutControlBytes(text), CRLF]);
}
