/**
 * What the Prometheus metrics cost per relayed command (issue 10): the three calls the relay makes
 * for one command (bytes to the backend, the command with its duration, bytes to the client), timed
 * in-process over many commands with a mix of verbs. Not a test: numbers only.
 *
 *   node --import tsx bench/metrics-per-command.ts [--commands 2000000] [--rounds 5]
 */
import { parseArgs } from 'node:util';
import { createPrometheusMetrics } from '../src/observability/prometheus.js';

const { values } = parseArgs({
  options: { commands: { type: 'string', default: '2000000' }, rounds: { type: 'string', default: '5' } },
});
const commands = Number(values.commands);
const rounds = Number(values.rounds);
const metrics = createPrometheusMetrics({ version: 'bench', defaultMetrics: false, listeners: [{ name: 'pop3s', tls: 'implicit' }] });
// A fetchmail-like mix, as the relay sees the verbs: as the client typed them.
const verbs = ['RETR', 'retr', 'UIDL', 'LIST', 'STAT', 'DELE', 'NOOP', 'XYZZY'];

function run(n: number): number {
  const started = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    metrics.bytesRelayed('to_backend', 8);
    metrics.commandRelayed(verbs[i & 7]!, 0.0004 * (i & 15));
    metrics.bytesRelayed('to_client', 2000);
  }
  const used = process.cpuUsage(started);
  return ((used.user + used.system) * 1000) / n; // ns per command
}

run(commands / 10); // warm up the JIT
const perRound: number[] = [];
for (let r = 0; r < rounds; r++) perRound.push(run(commands));
perRound.sort((a, b) => a - b);
console.log(`metrics per relayed command: median ${perRound[Math.floor(rounds / 2)]!.toFixed(0)} ns CPU ` +
  `(min ${perRound[0]!.toFixed(0)}, max ${perRound[rounds - 1]!.toFixed(0)}; ${rounds} rounds of ${commands})`);
