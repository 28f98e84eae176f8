import { Reply, loginRefusedReply } from './pop3/replies.js';

/**
 * Every failure popwarden reasons about is one of these: a stable `code` for logs and metrics,
 * an internal `message` for operators, and a separate `clientReply` that is all the client ever
 * sees (never backend text, never internals).
 */
export class PopwardenError extends Error {
  readonly code: string;
  readonly clientReply: string;

  constructor(code: string, message: string, clientReply: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.clientReply = clientReply;
  }
}

/** Which step of talking to the backend failed; used as the log "action" and error label. */
export type BackendStep =
  | 'connect'
  | 'greeting'
  | 'capa'
  | 'stls'
  | 'tls-handshake'
  | 'xclient'
  | 'auth'
  | 'relay'
  | 'quit';

/** The stable codes of backend failures, as logged and counted (popwarden_backend_errors_total). */
export const BACKEND_ERROR_CODES = [
  'E_BACKEND_CONNECT',
  'E_BACKEND_TIMEOUT',
  'E_BACKEND_CLOSED',
  'E_BACKEND_PROTOCOL',
  'E_BACKEND_TLS',
  'E_BACKEND_EXEC',
  'E_BACKEND_BUSY',
  'E_BACKEND_NO_SAFE_MECHANISM',
] as const;
export type BackendErrorCode = (typeof BACKEND_ERROR_CODES)[number];

/** The backend could not be reached, timed out, closed, or spoke something that is not POP3. */
export class BackendUnavailableError extends PopwardenError {
  readonly step: BackendStep;
  /** What went wrong, without the step. */
  readonly reason: string;
  readonly #code: Exclude<BackendErrorCode, 'E_BACKEND_NO_SAFE_MECHANISM'>;
  constructor(
    code: Exclude<BackendErrorCode, 'E_BACKEND_NO_SAFE_MECHANISM'>,
    step: BackendStep,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, `${step}: ${message}`, Reply.backendUnavailable, options);
    this.step = step;
    this.reason = message;
    this.#code = code;
  }

  /**
   * The same failure as seen by a reader at `step`: a link that broke (the backend hung up) is
   * noticed by whoever waits next, and the step it was waiting in is what the failure means
   * (a hang-up after the credentials is an unanswered guess, issue 9.4). The copy is a plain
   * BackendUnavailableError: subclasses (BackendSentTooMuchError) are told apart only by the
   * relay, whose reads are all at step 'relay', where the failure is returned as it is.
   */
  atStep(step: BackendStep): BackendUnavailableError {
    if (step === this.step) return this;
    return new BackendUnavailableError(this.#code, step, this.reason, { cause: this.cause ?? this });
  }
}

/**
 * The backend sent more after a complete reply: two status lines for one command, or a line after
 * a body's terminator. The reply reached the client whole; the link cannot be trusted to answer
 * the next command with that command's own reply, so it ends, and the session with it (B-04).
 */
export class BackendSentTooMuchError extends BackendUnavailableError {
  constructor(step: BackendStep, message: string) {
    super('E_BACKEND_PROTOCOL', step, message);
  }
}

/** The backend refused the credentials; `backendCode` is its RFC 2449 code, if it sent one. */
export class BackendRejectedError extends PopwardenError {
  readonly backendCode: string | undefined;
  /** What the backend said, for the operator's log only (escape it before logging). */
  readonly backendText: string;
  constructor(backendCode: string | undefined, backendText: string) {
    super('E_BACKEND_AUTH', 'backend refused the login', loginRefusedReply(backendCode));
    this.backendCode = backendCode;
    this.backendText = backendText;
  }

  /** True when the backend said the password was wrong, as opposed to "in use", "try later" etc. */
  get isCredentialFailure(): boolean {
    return this.clientReply === Reply.authFailed;
  }
}

/**
 * The backend offers no mechanism popwarden may use on this link without sending the password
 * in clear (or lacks the one the operator forced). `hint` tells the operator what would allow it.
 */
export class NoSafeMechanismError extends PopwardenError {
  readonly hint: string;
  constructor(message: string, hint: string) {
    super('E_BACKEND_NO_SAFE_MECHANISM' satisfies BackendErrorCode, message, Reply.loginNotPossibleSafely);
    this.hint = hint;
  }
}

/** The client left popwarden's writes unread for longer than the write-stall timeout (D-10). */
export class ClientStalledError extends PopwardenError {
  constructor(options?: { cause?: unknown }) {
    super('E_CLIENT_STALLED', 'the client stopped reading', '-ERR [SYS/TEMP] Timed out', options);
  }
}
