/** Cutting a byte stream into the chunks a socket might deliver, for codec tests. */

/** `data` cut at `points` (each taken modulo the length + 1, so any integer is a valid cut), in order. */
export function splitAt(data: Buffer, points: readonly number[]): Buffer[] {
  const cuts = [...new Set(points.map((p) => p % (data.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let start = 0;
  for (const cut of cuts) {
    chunks.push(data.subarray(start, cut));
    start = cut;
  }
  chunks.push(data.subarray(start));
  return chunks;
}
