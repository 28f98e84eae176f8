/**
 * One attack of bench/attacks.ts, in a process of its own so that the attacker's CPU and event
 * loop are not the legitimate client's: `node --import tsx bench/attack-load.ts JSON` where JSON
 * is {kind, options}; prints the AttackReport as one JSON line and exits.
 */
import { runAttack, type AttackKind, type AttackOptions } from '../test/harness/attackers.js';

const { kind, options } = JSON.parse(process.argv[2] ?? '{}') as { kind: AttackKind; options: AttackOptions };
const report = await runAttack(kind, options);
process.stdout.write(`${JSON.stringify(report)}\n`);
process.exit(0);
