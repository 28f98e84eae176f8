/**
 * A minimal inetd-style POP3 server as a shell script, for the `exec:` behaviours no real server
 * shows on demand: it greets, answers CAPA with -ERR and everything else with +OK, and ends at
 * QUIT. In its environment, ENV_DUMP=FILE writes the environment it got to FILE, and IGNORE_TERM=1
 * makes it ignore SIGTERM and, after EOF, keep running (only SIGKILL ends it).
 */
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const SCRIPT = `#!/bin/sh
[ -n "$ENV_DUMP" ] && env > "$ENV_DUMP"
[ -n "$IGNORE_TERM" ] && trap '' TERM
printf '+OK tiny\\r\\n'
while IFS= read -r line; do
  case "$line" in
    CAPA*) printf -- '-ERR no CAPA\\r\\n' ;;
    QUIT*) printf '+OK bye\\r\\n'; exit 0 ;;
    *) printf '+OK\\r\\n' ;;
  esac
done
# SIGTERM stays ignored across exec: only SIGKILL ends this.
[ -n "$IGNORE_TERM" ] && exec sleep 600
exit 0
`;

/** Writes the script into `dir` (mode 0755, or `mode`) and returns its path. */
export function writeTinyInetdServer(dir: string, name = 'tiny-pop3.sh', mode = 0o755): string {
  const path = join(dir, name);
  writeFileSync(path, SCRIPT);
  chmodSync(path, mode);
  return path;
}
