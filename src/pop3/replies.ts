/**
 * Every reply popwarden writes on its own, in one place. None of them contains client input
 * (cross-protocol attacks rely on reflected bytes, X-05) or backend text (which may enumerate
 * users or spoof a client's UI, B-06, S-08). Codes are RFC 2449 / RFC 3206 response codes.
 */
export const Reply = {
  ok: '+OK',
  loggedIn: '+OK Logged in',
  bye: '+OK Bye',
  userAccepted: '+OK Send PASS',
  beginTls: '+OK Begin TLS negotiation',
  saslEmptyChallenge: '+ ',
  loginUsernamePrompt: '+ VXNlcm5hbWU6', // base64("Username:"), what clients expect
  loginPasswordPrompt: '+ UGFzc3dvcmQ6', // base64("Password:")

  tlsRequired: '-ERR [AUTH] TLS required: use STLS',
  authFailed: '-ERR [AUTH] Authentication failed',
  authCancelled: '-ERR Authentication cancelled',
  saslMalformed: '-ERR Invalid SASL response',
  saslUnknownMechanism: '-ERR Unsupported authentication mechanism',
  authzidRefused: '-ERR [AUTH] Authentication failed',
  passWithoutUser: '-ERR Send USER first',
  badCredentialSyntax: '-ERR Invalid user name or password syntax',
  apopUnsupported: '-ERR APOP is not available, use USER/PASS or AUTH',
  alreadyTls: '-ERR Command not permitted when TLS is active',
  alreadyAuthenticated: '-ERR Command not permitted after login',
  unknownCommand: '-ERR Unknown command',
  badSyntax: '-ERR Syntax error',
  lineTooLong: '-ERR Line too long',
  tooLongForBackend: '-ERR Command too long for the mail server',
  extensionUnavailable: '-ERR XTND is not available through this server',
  tooManyErrors: '-ERR Too many invalid commands, closing connection',
  tooManyCommandsBeforeLogin: '-ERR Too many commands without logging in, closing connection',
  loginTimeout: '-ERR Login timed out',
  shuttingDown: '-ERR [SYS/TEMP] Server is shutting down, try again later',

  backendUnavailable: '-ERR [SYS/TEMP] Mail server unavailable, try again later',
  tooManyFailures: '-ERR [SYS/TEMP] Too many failed logins, try again later',
  loginUnavailable: '-ERR [SYS/TEMP] Login temporarily unavailable, try again later',
  connectionDenied: '-ERR [SYS/PERM] Connections from your address are not accepted',
  tooManyConnections: '-ERR [SYS/TEMP] Too many connections from your address, try again later',
  tooManyProtocolErrors: '-ERR [SYS/TEMP] Too many protocol errors from your address, try again later',
  /** limits.max_sessions: the whole server is full, whoever asks. */
  serverBusy: '-ERR [SYS/TEMP] Server busy, try again later',
  backendLost: '-ERR [SYS/TEMP] Connection to the mail server was lost',
  loginNotPossibleSafely: '-ERR [SYS/TEMP] Login to the mail server is not possible right now',
  inUse: '-ERR [IN-USE] Mailbox is in use by another session, try again later',
  loginDelay: '-ERR [LOGIN-DELAY] Logged in too recently, try again later',
  systemTemporary: '-ERR [SYS/TEMP] Mail server temporarily unavailable, try again later',
  systemPermanent: '-ERR [SYS/PERM] Mail server refused the login',
} as const;

/**
 * The reply for a login the backend refused. Codes that say "not your password" pass through
 * (clients re-prompt for a password on [AUTH] and must not on these, R-09); everything else,
 * including whatever text the backend wrote, becomes the one fixed failure reply (B-06).
 */
export function loginRefusedReply(backendCode: string | undefined): string {
  switch (backendCode) {
    case 'IN-USE':
      return Reply.inUse;
    case 'LOGIN-DELAY':
      return Reply.loginDelay;
    case 'SYS/TEMP':
      return Reply.systemTemporary;
    case 'SYS/PERM':
      return Reply.systemPermanent;
    default:
      return Reply.authFailed;
  }
}

/** Encodes one reply line for the wire. */
export function line(text: string): Buffer {
  return Buffer.from(`${text}\r\n`, 'latin1');
}
