import type { ConnectionOptions } from 'node:tls';
import { isIP } from 'node:net';
import type { BackendConfig, TimeoutsConfig } from '../config/types.js';
import type { Credentials } from '../auth/credentials.js';
import { escapeForLog, type Logger } from '../observability/log.js';
import type { Metrics } from '../observability/metrics.js';
import { BackendLink } from './link.js';
import { dialBackend, type ProgramRunner } from './dial.js';
import { localLinkTrust } from './local-link.js';
import type { CapabilityCache } from './capability-cache.js';
import { chooseMechanism, CLEARTEXT_MECHANISMS, strongestOffered, type BackendMechanism } from './mechanism.js';
import type { ApopMemory } from './shared-apop-users.js';
import type { ApopUserKind } from './apop-users.js';
import type { OfferMemory } from './shared-memory.js';
import { apopDigest, findApopTimestamp } from '../auth/apop.js';
import { cramMd5Response } from '../auth/cram-md5.js';
import { decodeBase64Strict } from '../auth/base64.js';
import { parseStatusLine, type StatusLine } from '../pop3/grammar.js';
import {
  parseCapabilities,
  UNKNOWN_CAPABILITIES,
  type BackendCapabilities,
} from '../pop3/capabilities.js';
import { MAX_CAPA_LINES, MAX_COMMAND_LINE_OCTETS, MAX_LOGGED_BACKEND_TEXT } from '../config/limits.js';
import {
  BackendRejectedError,
  BackendUnavailableError,
  NoSafeMechanismError,
  type BackendStep,
} from '../errors.js';
import { formatBackendAddress } from '../config/values.js';
import { backendKey, backendSettingText } from '../config/backend-keys.js';
import type { ClientOrigin } from '../net/proxy-intake.js';

/**
 * A logged-in backend connection, ready for the relay. Held by every idle session, so it keeps
 * only what the relay and the audit line use (CAPA after login asks the backend afresh).
 */
export interface BackendSession {
  readonly link: BackendLink;
  /** What the backend offered before login: the relay keeps lines it cannot read whole away from it. */
  readonly capabilities: BackendCapabilities;
  readonly mechanism: BackendMechanism;
}

export interface BackendLoginContext {
  readonly backend: BackendConfig;
  /** Whose login this is: told to the backend by a PROXY header or XCLIENT, when configured. */
  readonly client: ClientOrigin;
  readonly tlsOptions: ConnectionOptions;
  readonly timeouts: TimeoutsConfig;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** What this backend offered before: a weaker offer now is refused (issue 9.7). */
  readonly memory: OfferMemory;
  /** How each user logged in to a backend that offers APOP (the cleartext retry). */
  readonly apopUsers: ApopMemory;
  /** Told when the link breaks later, while no reply is outstanding. */
  readonly onIdleFailure: (error: BackendUnavailableError) => void;
  /** For an `exec:` backend: where its program is started, and the cap. */
  readonly programs: ProgramRunner;
  /** CAPA answers reused for a minute (absent: every login asks). */
  readonly capabilityCache?: CapabilityCache;
}

/**
 * The backend login: one attempt (loginOnce), and for a backend that offers APOP to users who
 * have no APOP secret (solid-pop3d, qpopper without a popauth entry), one retry of the same
 * password in clear on a fresh connection, where the link may carry it. The client made one
 * attempt and the guard counts one; the session answers every failure at the same deadline.
 * What worked is remembered per backend and user (ApopUsers), so that a guess is tested against
 * one secret: a user known to have an APOP secret gets no retry, a user known to have none goes
 * straight to the cleartext mechanism. And so that a guess costs the backend one failure: on a
 * backend where logging in in clear after a refused APOP has worked for someone, a user for whom
 * APOP and the retry were both refused lately from the same client address goes straight to the
 * cleartext mechanism from there too, until a login succeeds ('retry-refused'); only the first
 * wrong guess from an address at a user popwarden does not know is refused twice.
 */
export async function loginToBackend(credentials: Credentials, context: BackendLoginContext): Promise<BackendSession> {
  const address = formatBackendAddress(context.backend.address);
  // Asked only of a backend whose offer would make APOP the choice (loginOnce knows after CAPA):
  // behind one that offers CRAM-MD5, or no APOP timestamp, how the user logs in to APOP changes
  // nothing, and asking would cost every login a Redis round trip and an HMAC.
  let known: Promise<ApopUserKind | undefined> | undefined;
  const from = context.client.address;
  const howUserLogsIn = (): Promise<ApopUserKind | undefined> => (known ??= Promise.resolve(context.apopUsers.get(address, credentials.user, from)));
  const first = await loginOnce(credentials, context, { howUserLogsIn });
  if (first.kind === 'logged-in') {
    // After CRAM-MD5 there is nothing to learn: the user's APOP secret, if any, was not tried.
    if (first.apopOffered && context.backend.auth === 'auto' && first.session.mechanism !== 'cram-md5') {
      await context.apopUsers.remember(address, credentials.user, first.session.mechanism === 'apop' ? 'apop' : 'cleartext', from);
    }
    return first.session;
  }
  // A retry in clear follows a refused APOP only, and APOP was chosen after howUserLogsIn() was asked.
  if (!first.retryInClear || (await known) === 'apop') throw first.error;

  context.log.info({ action: 'retrying in clear' }, 'the backend refused APOP; retrying the same password with a cleartext mechanism on a fresh connection');
  let second: LoginResult;
  try {
    second = await loginOnce(credentials, context, PASS_OVER_APOP);
  } catch (error) {
    // Nothing was judged on the second connection: the verdict is APOP's.
    const judged = error instanceof BackendUnavailableError && error.step === 'auth';
    if (!judged && (error instanceof BackendUnavailableError || error instanceof NoSafeMechanismError)) {
      context.log.warn({ code: error.code, reason: error.message }, 'the cleartext retry after a refused APOP failed');
      throw first.error;
    }
    throw error;
  }
  if (second.kind === 'refused') {
    // Both refused this password. Were the user without an APOP secret, the cleartext refusal is
    // the verdict; were it with one, APOP's was. Either way, from now on one mechanism per guess:
    // in clear, but only on a backend where logging in in clear is known to work for someone,
    // and only for this client address: a user whose APOP secret is not their system password
    // cannot log in in clear, so a mark any address could set would lock them out.
    if (second.error.isCredentialFailure && context.apopUsers.cleartextWorks(address)) {
      await context.apopUsers.remember(address, credentials.user, 'retry-refused', from);
    }
    throw second.error;
  }
  await context.apopUsers.remember(address, credentials.user, 'cleartext', from);
  return second.session;
}

/** What one backend connection made of the credentials (anything else is thrown). */
type LoginResult =
  | { readonly kind: 'logged-in'; readonly session: BackendSession; readonly apopOffered: boolean }
  /** `retryInClear`: it was APOP, refused as a wrong password, and a cleartext mechanism may be used here. */
  | { readonly kind: 'refused'; readonly error: BackendRejectedError; readonly retryInClear: boolean };

/**
 * One backend login, as one linear script: connect, greeting (APOP timestamp), CAPA, STLS when
 * offered, CAPA again inside TLS, a check against what the backend offered before, then the
 * strongest mechanism allowed (passing over APOP if asked and allowed). Each step has its own
 * timeout and label. A refusal is returned; on any other failure the link is dropped without
 * QUIT and a typed error thrown: BackendUnavailableError or NoSafeMechanismError.
 */
/**
 * Whether one backend connection passes over APOP in favour of a cleartext mechanism: always on
 * the retry, and on a first attempt when the user is remembered to have no APOP secret there
 * (asked only when APOP would otherwise be the choice).
 */
interface ApopChoice {
  readonly howUserLogsIn: () => Promise<ApopUserKind | undefined>;
}

const PASS_OVER_APOP: ApopChoice = { howUserLogsIn: () => Promise.resolve('cleartext') };

async function loginOnce(credentials: Credentials, context: BackendLoginContext, apop: ApopChoice): Promise<LoginResult> {
  const { backend, timeouts, log } = context;
  const dialStarted = performance.now();
  const connection = await dialBackend(backend, timeouts.backendConnectMs, context.tlsOptions, context.client, context.programs);
  context.metrics.backendConnected((performance.now() - dialStarted) / 1000);
  const link = new BackendLink(connection.socket, context.onIdleFailure);
  const step = timeouts.backendStepMs;
  const address = formatBackendAddress(backend.address);
  let reused: BackendCapabilities | undefined;
  try {
    log.debug({ action: 'reading backend greeting' });
    const greeting = await readStatus(link, 'greeting', step).catch(async (error: unknown) => {
      // A program that ended before its greeting: one error that names it, with its exit status.
      if (connection.process === undefined || !(error instanceof BackendUnavailableError) || error.code !== 'E_BACKEND_CLOSED') throw error;
      if (connection.process.evicted) throw error; // said below
      link.destroy();
      throw await connection.process.earlyExitError();
    });
    if (!greeting.ok) throw protocolError('greeting', 'the backend greeted with -ERR');
    link.replyComplete('greeting');
    const apopTimestamp = findApopTimestamp(greeting.text);

    // A fresh answer from an earlier login stands in for CAPA (capability-cache.ts): it made that
    // login use CRAM-MD5 on a link without STLS, so it cannot lead to anything weaker.
    reused = backend.tls === 'starttls' ? undefined : context.capabilityCache?.fresh(address);
    let capabilities = reused ?? (await readCapabilities(link, step));
    const stlsOffered = capabilities.stls;
    if (wantsStls(backend, capabilities)) {
      log.debug({ action: 'upgrading backend link with STLS' });
      link.send('STLS');
      const reply = await readStatus(link, 'stls', step);
      if (!reply.ok) throw protocolError('stls', 'the backend refused STLS');
      await link.startTls(context.tlsOptions, step);
      // RFC 2595 §4: capabilities learnt before TLS are discarded.
      capabilities = await readCapabilities(link, step);
    }

    // Dovecot offers XCLIENT as a response code in its greeting, other servers in CAPA.
    if (backend.xclient === 'auto' && (greeting.code === 'XCLIENT' || capabilities.xclient)) {
      await forwardClientAddress(link, context.client, step, log);
    }

    // Before anything secret is sent: a backend that offers less than it did is not trusted.
    const offer = {
      strongest: strongestOffered(capabilities, apopTimestamp),
      stls: backend.tls === 'auto' || backend.tls === 'starttls' ? stlsOffered : undefined,
    };
    // APOP is the choice only without CRAM-MD5 (mechanism.ts): only then does it matter how this
    // user logs in. Asked in the same tick as the offer memory, so both share one Redis write.
    const apopWouldBeChosen = backend.auth === 'auto' && apopTimestamp !== undefined && !capabilities.sasl.has('CRAM-MD5');
    const userLogsIn = apopWouldBeChosen ? apop.howUserLogsIn() : undefined;
    const verdict = await context.memory.observe(address, offer);
    if (verdict.kind === 'refuse') throw new NoSafeMechanismError(verdict.reason, verdict.hint);
    // 'retry-refused': APOP and the retry in clear both refused this user from this address lately; one mechanism
    // per guess from now on, so a guess costs the backend one failure (loginToBackend).
    const howUserLogsIn = await userLogsIn;
    const passOverApop = howUserLogsIn === 'cleartext' || howUserLogsIn === 'retry-refused';

    const local = link.secure || backend.allowPlaintextAuth ? { trusted: true as const } : await localLinkTrust(backend, link.remoteAddress);
    const inputs = { mode: backend.auth, capabilities, apopTimestamp, cleartextAllowed: local.trusted, backend };
    // A user remembered as having no APOP secret, where no cleartext mechanism is offered now, still gets APOP.
    let choice = chooseMechanism({ ...inputs, passOverApop });
    if (choice.kind === 'none' && passOverApop) choice = chooseMechanism(inputs);
    if (choice.kind === 'none') {
      const why = local.trusted || local.why === undefined ? '' : ` (the socket is not trusted: ${local.why})`;
      throw new NoSafeMechanismError(choice.reason + why, choice.hint);
    }

    log.debug({ action: 'logging in to backend', backendMechanism: choice.mechanism });
    // Backends apply their per-address penalty here, so these replies get the longer timeout.
    const authTimeout = timeouts.backendAuthMs;
    const outcome = await authenticate(link, choice.mechanism, credentials, apopTimestamp, authTimeout, backendKey(backend, 'auth'));
    if (!outcome.ok) {
      link.destroy();
      const error = new BackendRejectedError(outcome.code, outcome.text);
      const inClear = chooseMechanism({ ...inputs, passOverApop: true });
      const retryInClear =
        choice.mechanism === 'apop' && error.isCredentialFailure && inClear.kind === 'use' && CLEARTEXT_MECHANISMS.has(inClear.mechanism);
      return { kind: 'refused', error, retryInClear };
    }
    link.replyComplete('auth');
    if (reused === undefined && choice.mechanism === 'cram-md5' && !stlsOffered && backend.tls !== 'starttls') {
      context.capabilityCache?.remember(address, capabilities);
    }
    connection.process?.loggedIn();
    // The login's waits are over: the session idles from here until its first command.
    link.stopTimer();
    return { kind: 'logged-in', session: { link, capabilities, mechanism: choice.mechanism }, apopOffered: apopTimestamp !== undefined };
  } catch (error) {
    link.destroy();
    // Whatever went wrong may be a backend that changed: the next login asks CAPA again.
    if (reused !== undefined) {
      context.capabilityCache?.forget(address);
      log.warn({ reason: error instanceof Error ? error.message : String(error) }, "the backend's CAPA answer of the last minute no longer holds (no credential was sent); the next login asks CAPA again");
    }
    // Its program was ended to make room for another login: the same hang-up at the same step
    // (after the credentials it counts as an unanswered guess, as any hang-up does), said plainly.
    if (connection.process?.evicted === true && error instanceof BackendUnavailableError && error.code === 'E_BACKEND_CLOSED') {
      throw new BackendUnavailableError('E_BACKEND_CLOSED', error.step, 'its backend program was ended to make room for another login (limits.max_backend_processes)', { cause: error });
    }
    throw error;
  }
}

function wantsStls(backend: BackendConfig, capabilities: BackendCapabilities): boolean {
  switch (backend.tls) {
    case 'off':
    case 'implicit': // already TLS from the first byte
      return false;
    case 'auto':
      return capabilities.stls;
    case 'starttls':
      if (!capabilities.stls) {
        throw new NoSafeMechanismError(
          `${backendSettingText(backend, 'tls', 'starttls')} is set but the backend does not offer STLS`,
          `enable STLS on the backend, or use ${backendSettingText(backend, 'tls', 'auto')}`,
        );
      }
      return true;
  }
}

/**
 * `XCLIENT ADDR=… PORT=…`: the backend's logs, penalties and limits see the client instead of
 * popwarden. Sent inside TLS when the link has it, before anything secret. A refusal (popwarden
 * not in the backend's trusted networks) is logged and the login goes on: the backend then sees
 * popwarden's address, as without the option.
 */
async function forwardClientAddress(link: BackendLink, client: ClientOrigin, timeoutMs: number, log: Logger): Promise<void> {
  if (isIP(client.address) === 0) return;
  log.debug({ action: 'telling the backend the client address (XCLIENT)' });
  link.send(`XCLIENT ADDR=${client.address} PORT=${client.port}`);
  const reply = await readStatus(link, 'xclient', timeoutMs);
  link.replyComplete('xclient');
  if (!reply.ok) log.warn({ backendText: escapeForLog(reply.text, MAX_LOGGED_BACKEND_TEXT) }, 'the backend refused XCLIENT; it sees popwarden as the client');
}

async function readStatus(link: BackendLink, step: BackendStep, timeoutMs: number): Promise<StatusLine> {
  const status = parseStatusLine(await link.readLine(step, timeoutMs));
  if (status === undefined) throw protocolError(step, 'reply is neither +OK nor -ERR');
  return status;
}

/** CAPA, tolerating -ERR from servers that predate RFC 2449. */
async function readCapabilities(link: BackendLink, timeoutMs: number): Promise<BackendCapabilities> {
  link.send('CAPA');
  const status = await readStatus(link, 'capa', timeoutMs);
  if (!status.ok) {
    link.replyComplete('capa');
    return UNKNOWN_CAPABILITIES;
  }
  const lines = await link.readShortList('capa', timeoutMs, MAX_CAPA_LINES);
  link.replyComplete('capa');
  return parseCapabilities(lines);
}

type AuthOutcome = { readonly ok: true } | { readonly ok: false; readonly code: string | undefined; readonly text: string };

async function authenticate(
  link: BackendLink,
  mechanism: BackendMechanism,
  credentials: Credentials,
  apopTimestamp: string | undefined,
  timeoutMs: number,
  /** The key that forces the mechanism (backend_auth, backends.NAME.auth), for the hint. */
  authKey: string,
): Promise<AuthOutcome> {
  const { user, password } = credentials;
  const finalReply = async (): Promise<AuthOutcome> => outcomeOf(await readStatus(link, 'auth', timeoutMs));

  switch (mechanism) {
    case 'cram-md5': {
      link.send('AUTH CRAM-MD5');
      const challenge = await readChallenge(link, timeoutMs, { command: 'AUTH CRAM-MD5', authKey });
      if (!Buffer.isBuffer(challenge)) return challenge;
      link.send(cramMd5Response(user, password, challenge));
      return finalReply();
    }
    case 'apop': {
      if (apopTimestamp === undefined) throw protocolError('auth', 'APOP without a timestamp');
      link.send(`APOP ${user} ${apopDigest(apopTimestamp, password)}`);
      return finalReply();
    }
    case 'plain': {
      const message = Buffer.concat([Buffer.from([0]), Buffer.from(user, 'latin1'), Buffer.from([0]), password]);
      const encoded = Buffer.from(message.toString('base64'), 'latin1');
      message.fill(0);
      const withInitialResponse = Buffer.concat([Buffer.from('AUTH PLAIN ', 'latin1'), encoded]);
      try {
        // RFC 5034 §4: an initial response must fit the 255-octet command line.
        if (withInitialResponse.length + 2 <= MAX_COMMAND_LINE_OCTETS) {
          link.send(withInitialResponse);
        } else {
          link.send('AUTH PLAIN');
          const challenge = await readChallenge(link, timeoutMs, { command: 'AUTH PLAIN', authKey });
          if (!Buffer.isBuffer(challenge)) return challenge;
          link.send(encoded);
        }
        return await finalReply();
      } finally {
        encoded.fill(0);
        withInitialResponse.fill(0);
      }
    }
    case 'login': {
      link.send('AUTH LOGIN');
      const userPrompt = await readChallenge(link, timeoutMs, { command: 'AUTH LOGIN', authKey });
      if (!Buffer.isBuffer(userPrompt)) return userPrompt;
      link.send(Buffer.from(user, 'latin1').toString('base64'));
      const passwordPrompt = await readChallenge(link, timeoutMs);
      if (!Buffer.isBuffer(passwordPrompt)) return passwordPrompt;
      const encoded = Buffer.from(password.toString('base64'), 'latin1');
      link.send(encoded);
      encoded.fill(0);
      return finalReply();
    }
    case 'user': {
      link.send(`USER ${user}`);
      const userReply = await finalReply();
      if (!userReply.ok) return userReply;
      const command = Buffer.concat([Buffer.from('PASS ', 'latin1'), password]);
      link.send(command);
      command.fill(0);
      return finalReply();
    }
  }
}

/**
 * Reads a SASL continuation ("+ base64"); an -ERR instead ends the exchange as a refusal. An -ERR
 * to the `opening` AUTH command itself judged no credential: the backend does not take the
 * mechanism (one it does not advertise, forced by the operator), and that is no login failure.
 */
async function readChallenge(link: BackendLink, timeoutMs: number, opening?: { readonly command: string; readonly authKey: string }): Promise<Buffer | AuthOutcome> {
  const line = (await link.readLine('auth', timeoutMs)).toString('latin1');
  if (line === '+' || line.startsWith('+ ')) {
    const challenge = decodeBase64Strict(line.slice(2).trim());
    if (challenge === undefined) throw protocolError('auth', 'malformed SASL challenge');
    return challenge;
  }
  const status = parseStatusLine(Buffer.from(line, 'latin1'));
  if (status === undefined || status.ok) throw protocolError('auth', 'expected a SASL continuation');
  if (opening !== undefined) throw protocolError('auth', `the backend refused ${opening.command} before any credential was sent: check ${opening.authKey}`);
  return outcomeOf(status);
}

function outcomeOf(status: StatusLine): AuthOutcome {
  return status.ok ? { ok: true } : { ok: false, code: status.code, text: status.text };
}

function protocolError(step: BackendStep, message: string): BackendUnavailableError {
  return new BackendUnavailableError('E_BACKEND_PROTOCOL', step, message);
}
