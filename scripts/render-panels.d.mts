/** Types for render-panels.mjs (imported by test/e2e/prometheus.test.ts). */
export declare const KEY_PANELS: Record<string, readonly string[]>;
export declare function formatValue(value: number, unit: string): string;
export declare function renderPanels(url: string, outDir: string, options?: { rangeSeconds?: number; step?: number }): Promise<string[]>;
export interface PanelSeries { readonly name: string; readonly points: readonly (readonly [number, number])[] }
export interface PanelMarker { readonly t: number; readonly label: string }
export declare function panelSvg(
  panel: { readonly title: string; readonly fieldConfig?: { readonly defaults?: { readonly unit?: string; readonly max?: number } } },
  series: readonly PanelSeries[], x: number, y: number, w: number, h: number, start: number, end: number, markers?: readonly PanelMarker[],
): string;
export declare function pagePng(title: string, note: string, groups: readonly string[], width: number, height: number, gap?: number): Buffer;
