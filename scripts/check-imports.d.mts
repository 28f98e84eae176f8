/** Types for check-imports.mjs (imported by test/unit/architecture.test.ts). */
export interface KnownDebt {
  readonly from: string;
  readonly to: string;
  readonly why: string;
}
export declare const KNOWN_DEBT: readonly KnownDebt[];
export declare function partOf(relative: string): string;
export declare function partGraph(root: string, options?: { valuesOnly?: boolean; everyImport?: boolean }): Map<string, string[]>;
export declare function cycles(edgeKeys: Iterable<string>): string[][];
export declare function check(root: string, debt?: readonly Omit<KnownDebt, 'why'>[]): string[];
