/** One table printed by `npm run bench`. */
export interface BenchTable {
  /** Section title, e.g. "relay: 2 GiB transfer agent -> relay -> agent". */
  title: string;
  /** Rows of the table; every row should have the same keys (the columns). */
  rows: Array<Record<string, string | number>>;
  /** Lines printed under the table: targets, ratios, machine notes. */
  notes?: string[];
  /** Headline figures for the combined summary `npm run bench` prints last. */
  summary?: SummaryRow[];
}

/** One headline figure: what, the value measured, and the target it is held to. */
export interface SummaryRow {
  metric: string;
  value: string;
  target: string;
  met?: boolean;
}

/** A bench section module in scripts/bench/<name>.ts exports `run`. */
export type BenchSection = (args: string[]) => Promise<BenchTable[]>;
