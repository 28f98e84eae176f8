import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { replaceableBecause } from './local-link.js';

/**
 * What is wrong with `command` as an `exec:` backend, for --check-config, or undefined: it must
 * be a file popwarden may execute, and one no other user can change or replace, since popwarden
 * (often as root, for servers that switch to the mailbox owner) runs it with every password.
 */
export async function programProblem(command: string): Promise<string | undefined> {
  const stats = await stat(command).catch((error: NodeJS.ErrnoException) => error);
  if (stats instanceof Error) return stats.code === 'ENOENT' ? `${command} does not exist` : `${command} cannot be read: ${stats.message}`;
  if (!stats.isFile()) return `${command} is not a file`;
  const executable = await access(command, constants.X_OK).then(() => true, () => false);
  if (!executable) return `${command} is not executable (chmod +x ${command}, or name the right program)`;
  const replaceable = await replaceableBecause(command, 'program');
  return replaceable === undefined ? undefined : `${command} is not safe to run: ${replaceable}`;
}
