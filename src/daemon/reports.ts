// What the control API answers about a store: snapshot rows, storage, status, checks and reverts,
// and how they are made from what the volume reports. Plain data: no I/O, no decisions.

import type { SnapshotInfo, StoreReport } from "../cow/index.js";
import type { FsckReport } from "../fs/fsck.js";
import { gmtName } from "../mount/index.js";

export interface SnapshotRow {
  id: number;
  /** The `@GMT-…` name under `.snapshots`. */
  gmt: string;
  /** The user-given name, if any. */
  name: string | null;
  /** The snapshot set it was taken in, if any. */
  setId: string | null;
  createdAt: string;
  diffAreaBytes: number;
  /** What deleting it alone would free. */
  exclusiveBytes: number;
  /** Tags of its holds: while it has one, nothing deletes it. */
  holds: string[];
  /** Taken by the timeline rather than by hand. */
  timeline: boolean;
  /** Its identity in every store that has it (kept by `snapshot receive`). */
  guid: string;
}

export interface StorageReport {
  usedBytes: number;
  limitBytes: number;
  onFull: string;
  snapshots: Array<{
    gmt: string;
    name: string | null;
    diffAreaBytes: number;
    exclusiveBytes: number;
    holds: string[];
    timeline: boolean;
  }>;
  evictions: Array<{ gmt: string; name: string | null; evictedAt: string; reason: string }>;
}

export interface CheckReport {
  ok: boolean;
  store: { ok: boolean; problems: string[]; notes: string[] } | null;
  fs: FsckReport;
  checked: string;
}

export interface StoreStatus {
  store: string;
  volumeBytes: number;
  chunkBytes: number;
  blockBytes: number;
  usedBytes: number;
  freeBytes: number;
  files: number;
  snapshots: number;
  shadowStorageUsedBytes: number;
  shadowStorageLimitBytes: number;
  onFull: string;
  /** Where it is mounted; null when it is not. */
  mountpoint: string | null;
}

/** What `status` adds when a daemon has the store mounted. */
export interface MountStatus {
  pid: number;
  /** Files open in production. */
  openFiles: number;
  exposed: Array<{ mountpoint: string; id: number }>;
}

export type StatusReport = StoreStatus & Partial<MountStatus>;

export interface RevertResult {
  reverted: SnapshotRow;
  /** Production as it was, kept as a snapshot (none with `discardNewer`). */
  saved: SnapshotRow | null;
  discarded: SnapshotRow[];
}

export const snapshotRow = (s: SnapshotInfo, exclusiveBytes: number): SnapshotRow => ({
  id: s.id,
  gmt: gmtName(s.createdAt),
  name: s.name ?? null,
  setId: s.setId ?? null,
  createdAt: new Date(s.createdAt).toISOString(),
  diffAreaBytes: s.diffAreaBytes,
  exclusiveBytes,
  holds: s.holds,
  timeline: s.timeline,
  guid: s.guid,
});

/** The report of a check of production: the store's files and the filesystem. */
export const checked = (st: StoreReport, fs: FsckReport): CheckReport => ({
  ok: st.ok && fs.ok,
  store: {
    ok: st.ok,
    problems: st.problems.map((p) => `${p.file}: ${p.message}`),
    notes: st.notes,
  },
  fs,
  checked: "production",
});
