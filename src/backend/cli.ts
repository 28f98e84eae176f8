/**
 * `popwarden backend show|forget ADDRESS [--state-dir DIR]`: what popwarden remembers each backend
 * offered (BackendMemory), and how an operator accepts a backend that now offers less.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { defaultStateDir } from '../config/load.js';
import { BackendMemory } from './memory.js';

export interface BackendCliIo {
  out(text: string): void;
  err(text: string): void;
}

export const BACKEND_USAGE = `Usage: popwarden backend show [--state-dir DIR]
       popwarden backend forget ADDRESS [--state-dir DIR]

popwarden remembers the strongest login each backend offered (CRAM-MD5, APOP, cleartext) and
whether it offered STLS, and refuses a backend that later offers less: that is what an impostor
on the port or a man in the middle would do. If the backend was changed on purpose, forget it:
the next login remembers what it offers then. A running popwarden sees the change at once.
ADDRESS is the backend as \`show\` lists it: HOST:PORT, unix:/path, or "exec:/program args".

  --state-dir DIR   popwarden's state_dir (default: $STATE_DIRECTORY, else ./.state)
`;

/** Runs `popwarden backend ...`; resolves the exit status (0 ok, 1 failure, 2 usage error). */
export async function runBackendCli(argv: readonly string[], env: NodeJS.ProcessEnv, io: BackendCliIo): Promise<number> {
  let parsed: { values: { 'state-dir'?: string; help?: boolean }; positionals: string[] };
  try {
    parsed = parseArgs({
      args: [...argv],
      options: { 'state-dir': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    io.err(`popwarden backend: ${(error as Error).message}\n${BACKEND_USAGE}`);
    return 2;
  }
  const [command, address, ...extra] = parsed.positionals;
  if (parsed.values.help === true) {
    io.out(BACKEND_USAGE);
    return 0;
  }
  const valid = (command === 'show' && address === undefined) || (command === 'forget' && address !== undefined && extra.length === 0);
  if (!valid) {
    io.err(BACKEND_USAGE);
    return 2;
  }
  const memory = new BackendMemory(resolve(parsed.values['state-dir'] ?? defaultStateDir(env)));
  try {
    if (command === 'show') {
      io.out(`${JSON.stringify(memory.entries(), null, 2)}\n`);
      return 0;
    }
    if (!memory.forget(address!)) {
      io.err(`popwarden backend forget: ${address} is not remembered in ${memory.file}\n`);
      return 1;
    }
    io.out(`forgot ${address}: the next login remembers what it offers then\n`);
    return 0;
  } catch (error) {
    io.err(`popwarden backend ${command}: ${(error as Error).message}\n`);
    return 1;
  }
}
