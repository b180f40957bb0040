// The append-only log of snapshot protocol runs of one volume: one JSON object per line.
// It never rewrites a complete record; only a torn last line (a write cut short) is dropped.

import { open, readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { CorruptStoreError } from "../errors.js";
import type { SnapshotRun } from "./coordinator.js";
import type { WriterInfo, WriterResult } from "./writer.js";

/** One run of the protocol, as one volume's history keeps it. */
export interface HistoryRecord {
  /** When the run started (ISO 8601). */
  startedAt: string;
  setId: string;
  /** The user-given snapshot name, if any. */
  name: string | null;
  volume: string;
  writers: WriterInfo[];
  /** This volume's writers' answers to every event, with their durations. */
  events: WriterResult[];
  /** How long I/O on the volumes was held, in ms; null when it was not. */
  holdMs: number | null;
  result: "ok" | "failed";
  reason: string | null;
  /** The snapshot the run left on this volume. */
  snapshot: { id: number; gmt: string } | null;
  /** The snapshot committed on this volume and deleted because the run failed. */
  discarded: { id: number; gmt: string } | null;
}

/** The part of a (possibly multi-volume) run that concerns `volume`. */
export function historyRecord(run: SnapshotRun, volume: string): HistoryRecord {
  const mine = <T extends { volume: string }>(xs: T[]) => xs.filter((x) => x.volume === volume);
  const strip = (s: { id: number; gmt: string } | undefined) =>
    s ? { id: s.id, gmt: s.gmt } : null;
  return {
    startedAt: run.startedAt,
    setId: run.setId,
    name: run.name,
    volume,
    writers: mine(run.writers).map(({ name, kind, paths, restore }) => ({
      name,
      kind,
      paths,
      restore,
    })),
    events: mine(run.events),
    holdMs: run.holdMs,
    result: run.result,
    reason: run.reason ?? null,
    snapshot: strip(mine(run.snapshots)[0]),
    discarded: strip(mine(run.discarded)[0]),
  };
}

/**
 * Appends `record` as one line and fsyncs it; a new file's directory is fsynced too.
 * A torn last line left by an earlier crash is cut off first, so it never ends up mid-file.
 */
export async function appendHistory(path: string, record: HistoryRecord): Promise<void> {
  const fh = await open(path, "a+", 0o644);
  try {
    const { size } = await fh.stat();
    if (size > 0) {
      const keep = await completeLength(fh, size);
      if (keep < size) await fh.truncate(keep);
    }
    await fh.appendFile(`${JSON.stringify(record)}\n`);
    await fh.sync();
    if (size === 0) await syncDir(dirname(path));
  } finally {
    await fh.close();
  }
}

/** The length of the file up to and including its last newline. */
async function completeLength(fh: Awaited<ReturnType<typeof open>>, size: number): Promise<number> {
  const chunk = Buffer.alloc(64 * 1024);
  let end = size;
  while (end > 0) {
    const start = Math.max(0, end - chunk.length);
    const { bytesRead } = await fh.read(chunk, 0, end - start, start);
    const nl = chunk.subarray(0, bytesRead).lastIndexOf(0x0a);
    if (nl >= 0) return start + nl + 1;
    end = start;
  }
  return 0;
}

async function syncDir(dir: string): Promise<void> {
  const d = await open(dir, "r");
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

export interface History {
  records: HistoryRecord[];
  /** A last line cut short by a crash, skipped: its line number and text. */
  torn: { line: number; text: string } | null;
}

/**
 * The records of the history at `path` (none when it does not exist). A damaged last line is
 * reported in `torn`; a damaged line before the last means the file is corrupt, and is refused.
 */
export async function readHistory(path: string): Promise<History> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { records: [], torn: null };
    throw e;
  }
  const lines = text.split("\n");
  // A file ending in a newline splits into an empty last element, which is no line.
  if (lines[lines.length - 1] === "") lines.pop();
  const records: HistoryRecord[] = [];
  for (const [i, line] of lines.entries()) {
    const record = parse(line);
    if (record) {
      records.push(record);
      continue;
    }
    if (i === lines.length - 1) return { records, torn: { line: i + 1, text: line } };
    throw new CorruptStoreError(path, `line ${i + 1} is not a history record`);
  }
  return { records, torn: null };
}

function parse(line: string): HistoryRecord | null {
  try {
    const v = JSON.parse(line) as unknown;
    if (typeof v !== "object" || v === null) return null;
    const r = v as Partial<HistoryRecord>;
    if (typeof r.setId !== "string" || typeof r.startedAt !== "string") return null;
    if (r.result !== "ok" && r.result !== "failed") return null;
    return r as HistoryRecord;
  } catch {
    return null;
  }
}
