/** Types for render-panels.mjs (imported by test/e2e/prometheus.test.ts). */
export declare const KEY_PANELS: Record<string, readonly string[]>;
export declare function formatValue(value: number, unit: string): string;
export declare function renderPanels(url: string, outDir: string, options?: { rangeSeconds?: number; step?: number }): Promise<string[]>;
