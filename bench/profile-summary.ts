/**
 * Where a `.cpuprofile` (node --cpu-prof) spent its time, optionally only between two instants:
 * self time by function (its name, file and line) and by file, and total time (with what it
 * calls) of popwarden's own functions (dist/ and src/), the largest first.
 *
 *   node --import tsx bench/profile-summary.ts FILE [--from µs --to µs] [--top 40]
 *
 * --from and --to are CLOCK_MONOTONIC µs (process.hrtime.bigint() / 1000n in any process of the
 * machine), the clock of the profile's sample times: bench/profile-relay.ts quit prints its wave's.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  readonly id: number;
  readonly children?: readonly number[];
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
}
interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { from: { type: 'string' }, to: { type: 'string' }, top: { type: 'string', default: '40' } },
});
const profile = JSON.parse(readFileSync(positionals[0] ?? '', 'utf8')) as Profile;
const from = values.from === undefined ? -Infinity : Number(values.from);
const to = values.to === undefined ? Infinity : Number(values.to);
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const parentOf = new Map<number, number>();
for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);

const byFunction = new Map<string, number>();
const byFile = new Map<string, number>();
const ownTotal = new Map<string, number>();
let total = 0;
let at = profile.startTime;
for (let i = 0; i < profile.samples.length; i++) {
  at += profile.timeDeltas[i] ?? 0;
  // A sample's time is what passed until the next one.
  const weight = profile.timeDeltas[i + 1] ?? 0;
  if (at < from || at > to) continue;
  const frame = byId.get(profile.samples[i]!)!.callFrame;
  if (frame.functionName === '(idle)') continue;
  const file = fileOf(frame.url);
  const name = nameOf(frame);
  byFunction.set(name, (byFunction.get(name) ?? 0) + weight);
  byFile.set(file, (byFile.get(file) ?? 0) + weight);
  total += weight;
  // Each of our functions on the sample's stack, once however deep its recursion.
  const onStack = new Set<string>();
  for (let id: number | undefined = profile.samples[i]; id !== undefined; id = parentOf.get(id)) {
    const caller = byId.get(id)!.callFrame;
    if (/^(dist|src)\//.test(fileOf(caller.url))) onStack.add(nameOf(caller));
  }
  for (const own of onStack) ownTotal.set(own, (ownTotal.get(own) ?? 0) + weight);
}

function fileOf(url: string): string {
  return url.replace(/^.*\/(node_modules\/|dist\/|src\/)/, '$1') || '(native)';
}

function nameOf(frame: ProfileNode['callFrame']): string {
  return `${frame.functionName || '(anonymous)'} ${fileOf(frame.url)}:${frame.lineNumber + 1}`;
}

const top = Number(values.top);
const show = (title: string, table: Map<string, number>): void => {
  console.log(`\n${title}`);
  for (const [name, us] of [...table].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${(us / 1000).toFixed(1).padStart(9)} ms ${((100 * us) / total).toFixed(1).padStart(5)}%  ${name}`);
  }
};
console.log(`busy (not idle) ${(total / 1000).toFixed(0)} ms`);
show('self time by function', byFunction);
show('self time by file', byFile);
show("total time of popwarden's functions (with what they call)", ownTotal);
