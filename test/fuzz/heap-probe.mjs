// Preloaded (--import) into the popwarden process the e2e fuzz target starts, with --expose-gc:
// on SIGUSR2 it collects garbage and prints the heap in use as one JSON line, so the target can
// compare popwarden's heap after a short run and after a long one. Test-only; never in src/.
process.on('SIGUSR2', () => {
  globalThis.gc?.();
  process.stdout.write(`${JSON.stringify({ heapProbe: process.memoryUsage().heapUsed })}\n`);
});
