/**
 * How much of a process's CPU its own JavaScript spends (issue 10), from a `perf record -g` of a
 * node started with `--perf-basic-prof`: each sample is given to the innermost JavaScript frame on
 * its stack, so a builtin, a runtime call or a scavenge that popwarden's code set off counts as
 * popwarden's, and a socket write it made counts as Node's (the write's JavaScript is Node's).
 * Shares of samples, not times: two builds profiled one after the other under the same load
 * compare better than their CPU per command does on a shared machine.
 *
 *   perf record -e cpu-clock -F 20000 -g -p PID -o run.data -- sleep 4
 *   perf script -i run.data -F ip,sym > run.txt
 *   node bench/perf-js-share.mjs run.txt [more.txt ...] [--ours REGEX] [--top N]
 *
 * bench/README.md ("What popwarden's own code costs per command") reads it.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { ours: { type: 'string', default: '/dist/|/\\.ab/' }, top: { type: 'string', default: '12' } },
});
const ours = new RegExp(values.ours);
const top = Number(values.top);

const percent = (part, whole) => `${((100 * part) / whole).toFixed(2).padStart(6)}%`;
const short = (frame) => frame.replace(/^JS:[*^~+]?/, '').replace(/file:\/\/\S*?\/(dist|\.ab\/\w+)\//, '');

for (const file of positionals) {
  const owner = new Map();
  const ourFunctions = new Map();
  const nodeCalledByUs = new Map();
  let samples = 0;
  const count = (map, key) => map.set(key, (map.get(key) ?? 0) + 1);
  for (const stack of readFileSync(file, 'utf8').split('\n\n')) {
    const frames = stack.trim().split('\n').map((line) => line.trim().replace(/^[0-9a-f]+ /, '')).filter(Boolean);
    if (frames.length === 0) continue;
    samples += 1;
    const js = frames.filter((frame) => frame.startsWith('JS:'));
    const firstOurs = js.findIndex((frame) => ours.test(frame));
    if (js.length === 0) count(owner, 'no JavaScript on the stack (kernel, libuv, OpenSSL, GC threads)');
    else if (firstOurs === 0) count(owner, 'innermost JavaScript is ours');
    else count(owner, 'innermost JavaScript is Node\'s or a dependency\'s');
    if (firstOurs === 0) count(ourFunctions, `${short(js[0])}  [${short(frames[0])}]`.slice(0, 120));
    if (firstOurs > 0) count(nodeCalledByUs, `${short(js[firstOurs])} -> ${short(js[firstOurs - 1])}`.slice(0, 120));
  }
  console.log(`${file}: ${samples} samples`);
  for (const [what, n] of [...owner].sort((a, b) => b[1] - a[1])) console.log(`  ${percent(n, samples)}  ${what}`);
  console.log('  ours, by function [and where the sample was]:');
  for (const [what, n] of [...ourFunctions].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`    ${percent(n, samples)}  ${what}`);
  console.log('  Node functions our code called, with everything under them:');
  for (const [what, n] of [...nodeCalledByUs].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`    ${percent(n, samples)}  ${what}`);
}
