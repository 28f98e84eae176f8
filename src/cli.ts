#!/usr/bin/env -S node --max-semi-space-size=2
/**
 * The shebang caps V8's young generation at 2 MB: it grows to ~30 MB in a burst of logins and stays
 * resident, which is most of an idle session's cost at 1,000 sessions (issue 10: 47-56 KiB each
 * without the cap, 33-38 with it, no CPU cost measured). Node cannot set it from inside the process.
 *
 * `popwarden [--config FILE] [options]`: load the config, build TLS, start the listeners, stop on
 * SIGTERM/SIGINT (draining for timeouts.shutdown), reload the config and certificates on SIGHUP. Any failure before serving is one line on stderr and exit status 1; the wording
 * lives in config/startup-errors.ts.
 */
import type { ReloadableProxy } from './proxy.js';
import { runPopwarden } from './wiring/run-popwarden.js';
import { loadConfig, redactedConfig, usage } from './config/load.js';
import { yamlPackage } from './config/config-file.js';
import { startupErrorLine } from './config/startup-errors.js';
import { configDescriptorWarning } from './net/descriptor-budget.js';
import type { Config } from './config/types.js';
import { checkConfiguredCertificate } from './certs/checks.js';
import { checkStateDir } from './config/state-dir.js';
import { describeSwitchedOff } from './auth/rate-limit/policy.js';
import { packageVersion } from './version.js';
import { createLogger, type Logger } from './observability/log.js';
import { runRateLimitCli } from './auth/rate-limit/cli.js';
import { runCertCli } from './certs/cli.js';
import { runBackendCli } from './backend/cli.js';
import { backendConfigProblem } from './backend/probe.js';

/**
 * SIGTERM/SIGINT: close gracefully and exit 0; a second one while closing exits 1 at once.
 * Installed before the listeners are bound: until a handler exists the OS default kills the
 * process, and a stop request that arrives mid-startup must still end in an orderly close.
 */
function handleStopSignals(log: Logger, drainMs: number): { started(proxy: ReloadableProxy): void } {
  let proxy: ReloadableProxy | undefined;
  let stopping = false;
  const closeAndExit = (running: ReloadableProxy): void => {
    running.close({ drainMs }).then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (error: unknown) => {
        log.error({ err: error }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn({ signal }, 'second stop signal: exiting without waiting for sessions');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'stopping');
    if (proxy !== undefined) closeAndExit(proxy);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // Node's default for SIGHUP is to exit; a `systemctl reload` must not kill the service.
  process.on('SIGHUP', () => {
    if (proxy === undefined || stopping) {
      log.warn('SIGHUP ignored: popwarden is still starting or already stopping');
      return;
    }
    log.info({ signal: 'SIGHUP' }, 'reloading the configuration and certificates');
    void proxy.reload();
  });
  return {
    started(running) {
      proxy = running;
      if (stopping) closeAndExit(running);
    },
  };
}

/** What is worth saying about the config before it runs, but does not stop it (--check-config prints it too). */
function startWarnings(config: Config): string[] {
  const descriptors = configDescriptorWarning(config);
  return descriptors === undefined ? [] : [descriptors];
}

async function serve(config: Config, warnings: readonly string[], reread: () => Config): Promise<void> {
  const log = createLogger(config.logLevel);
  for (const warning of warnings) log.warn(warning);
  const signals = handleStopSignals(log, config.timeouts.shutdownMs);
  signals.started(await runPopwarden(config, log, { loadConfig: reread }));
}

/** The same flags, environment and file as at startup, read again (a reload). */
function rereadConfig(argv: string[], env: NodeJS.ProcessEnv): Config {
  const loaded = loadConfig(argv, env);
  if (loaded.action !== 'run') throw new Error(`unexpected action ${loaded.action} while reloading`);
  return loaded.config;
}

async function main(argv: string[]): Promise<void> {
  const io = { out: (text: string) => void process.stdout.write(text), err: (text: string) => void process.stderr.write(text) };
  if (argv[0] === 'ratelimit') {
    process.exitCode = await runRateLimitCli(argv.slice(1), process.env, io);
    return;
  }
  if (argv[0] === 'backend') {
    process.exitCode = await runBackendCli(argv.slice(1), process.env, io);
    return;
  }
  if (argv[0] === 'cert') {
    process.exitCode = await runCertCli(argv.slice(1), io);
    return;
  }
  const loaded = loadConfig(argv, process.env);
  switch (loaded.action) {
    case 'help':
      process.stdout.write(usage());
      return;
    case 'version':
      process.stdout.write(`popwarden ${packageVersion()}\n`);
      return;
    case 'check': {
      // The mode only: an administrator may check as root the config of a service's own user.
      checkStateDir(loaded.config.stateDir, 'any user');
      for (const warning of [...loaded.warnings, ...startWarnings(loaded.config)]) process.stderr.write(`popwarden: WARNING: ${warning}\n`);
      for (const warning of await checkConfiguredCertificate(loaded.config)) process.stderr.write(`popwarden: WARNING: ${warning}\n`);
      process.stdout.write(
        `# popwarden effective configuration (secrets masked)\n${describeSwitchedOff(loaded.config.rateLimit).map((note) => `# ${note}\n`).join('')}${yamlPackage().stringify(redactedConfig(loaded.settings))}`,
      );
      // A backend certificate popwarden would refuse at every login is a configuration error too.
      const problems = await Promise.all(loaded.config.backends.map((backend) => backendConfigProblem(backend, loaded.config.timeouts.backendConnectMs)));
      for (const backendProblem of problems.filter((problem) => problem !== undefined)) {
        process.stderr.write(`popwarden: ${backendProblem}\n`);
        process.exitCode = 1;
      }
      return;
    }
    case 'run':
      await serve(loaded.config, loaded.warnings, () => rereadConfig(argv, process.env));
      return;
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`${startupErrorLine(error)}\n`);
  // exit() rather than exitCode: a half-made startup must not linger on some stray handle.
  process.exit(1);
});
