// bench:mount's figures and how they are shown: the fields every target has, the JSON object,
// and the table with its ratios (each gap to bindfs split into the binding's share, ceiling/bindfs,
// and shadowfs's own, shadowfs/ceiling). It measures nothing and starts nothing.

import { fmt, notes, printReport, round } from "./bench-common.js";

/** The built-in targets, in the order they run and appear. */
export const TARGETS = ["host", "bindfs", "ceiling", "shadowfs", "snapshot"] as const;
export type TargetName = (typeof TARGETS)[number];

export const FIELDS = [
  "seqWriteMBps",
  "seqReadMBps",
  "randWriteIops",
  "randReadIops",
  "createPerSec",
  "statPerSec",
  "deletePerSec",
  "rsyncInSec",
  "rsyncOutSec",
  "treeRsyncInSec",
  "treeRsyncOutSec",
  "untarSec",
  "statTreeSec",
  "rmTreeSec",
] as const;
export type Field = (typeof FIELDS)[number];
/** A target's figures; null where it was not measured (the write side of a snapshot). */
export type Figures = Record<Field, number | null>;

export type Results = Record<TargetName, Figures | null> & {
  snapshotCreateMs: number | null;
  /** Median wall time of `shadowfs --help`, the command's start-up alone. */
  cliHelpMs: number | null;
  /** The --extra filesystems', by name. */
  extra: Record<string, Figures>;
};

export const LABELS: Record<Field, string> = {
  seqWriteMBps: "seq write 128K (MB/s)",
  seqReadMBps: "seq read 128K (MB/s)",
  randWriteIops: "random write 4K (IOPS)",
  randReadIops: "random read 4K (IOPS)",
  createPerSec: "create (files/s)",
  statPerSec: "stat (files/s)",
  deletePerSec: "delete (files/s)",
  rsyncInSec: "rsync in (s)",
  rsyncOutSec: "rsync out (s)",
  treeRsyncInSec: "real tree rsync in (s)",
  treeRsyncOutSec: "real tree rsync out (s)",
  untarSec: "untar (s)",
  statTreeSec: "find | stat (s)",
  rmTreeSec: "rm -rf (s)",
};
/** Times (lower is better), not rates: rsyncInSec, not createPerSec. */
const isSeconds = (f: Field) => f.endsWith("Sec") && !f.endsWith("PerSec");
export const DIGITS = (f: Field) => (f.endsWith("MBps") ? 1 : isSeconds(f) ? 3 : 0);

export const emptyFigures = (): Figures =>
  Object.fromEntries(FIELDS.map((f) => [f, null])) as unknown as Figures;

/** Relative performance of `a` against `b` (above 1: `a` is faster), or null. */
function faster(field: Field, a: number | null | undefined, b: number | null | undefined) {
  if (a == null || b == null || a === 0 || b === 0) return null;
  return isSeconds(field) ? b / a : a / b;
}

const rounded = (f: Figures | null) =>
  f && Object.fromEntries(FIELDS.map((k) => [k, round(f[k], DIGITS(k))]));

/** Prints the results: the table (with `config` and the notes), or with `json` one JSON line. */
export function report(r: Results, json: boolean, config: string): void {
  const out = {
    ...Object.fromEntries(TARGETS.map((t) => [t, rounded(r[t])])),
    snapshotCreateMs: round(r.snapshotCreateMs, 1),
    cliHelpMs: round(r.cliHelpMs, 1),
    extra: Object.fromEntries(Object.entries(r.extra).map(([name, f]) => [name, rounded(f)])),
  };
  if (r.ceiling && r.bindfs && (r.shadowfs || r.snapshot))
    notes.push(
      "shadowfs/bindfs = shadowfs/ceiling x ceiling/bindfs: ceiling/bindfs is the binding's part of the gap, shadowfs/ceiling shadowfs's own",
    );
  printReport(json, config, out, () => table(r));
}

/** Pairs a/b shown as ratios, when both ran: how far each is from the next better one. */
const PAIRS = [
  ["bindfs", "host"],
  ["ceiling", "bindfs"],
  ["shadowfs", "ceiling"],
  ["shadowfs", "bindfs"],
  ["snapshot", "ceiling"],
  ["snapshot", "bindfs"],
  ["shadowfs", "host"],
  ["snapshot", "host"],
] as const;

/** The figures of every target that ran, then how they compare. */
function table(r: Results): string[] {
  const columns = new Map<string, Figures>();
  for (const t of TARGETS) if (r[t]) columns.set(t, r[t]);
  for (const [name, f] of Object.entries(r.extra)) columns.set(name, f);
  const ran = [...columns.keys()];
  const pairs = [...PAIRS, ...Object.keys(r.extra).map((name) => [name, "bindfs"] as const)].filter(
    ([a, b]) => columns.has(a) && columns.has(b),
  );
  const width = Math.max(10, ...ran.map((t) => t.length + 2));
  const lines = ["metric".padEnd(24) + ran.map((t) => t.padStart(width)).join("")];
  for (const f of FIELDS)
    lines.push(
      LABELS[f].padEnd(24) +
        ran.map((t) => fmt(columns.get(t)![f], DIGITS(f)).padStart(width)).join(""),
    );
  if (r.snapshotCreateMs !== null)
    lines.push(`${"snapshot create (ms)".padEnd(24)}${fmt(r.snapshotCreateMs, 1).padStart(width)}`);
  if (r.cliHelpMs !== null)
    lines.push(`${"shadowfs --help (ms)".padEnd(24)}${fmt(r.cliHelpMs, 1).padStart(width)}`);
  if (pairs.length > 0) {
    lines.push("", "relative performance, a/b: 1.00 the same, below 1 slower, above 1 faster");
    const widths = pairs.map(([a, b]) => Math.max(10, a.length + b.length + 3));
    lines.push(
      "a/b".padEnd(24) + pairs.map(([a, b], i) => `${a}/${b}`.padStart(widths[i]!)).join(""),
    );
    for (const f of FIELDS) {
      const ratio = (a: string, b: string) => faster(f, columns.get(a)![f], columns.get(b)![f]);
      const ratios = pairs.map(([a, b], i) => fmt(ratio(a, b), 2).padStart(widths[i]!));
      lines.push(LABELS[f].padEnd(24) + ratios.join(""));
    }
  }
  return lines;
}
