// A reference model of a copy-on-write volume (plain buffers) and a random operation driver that
// applies the same steps to a CowVolume and to the model. It asserts nothing itself.

import { CowVolume, type HostFs, type OpenOptions } from "../../src/cow/index.js";
import { isFsError } from "../../src/errors.js";
import { int, pick, type Rand } from "./random.js";

export const quiet = { info() {}, warn() {}, error() {} };

export class Model {
  live: Buffer;
  /** Snapshot images by id, oldest first. */
  snaps = new Map<number, Buffer>();

  constructor(size: number) {
    this.live = Buffer.alloc(size);
  }
}

export type Op =
  | { op: "write"; offset: number; data: Buffer }
  | { op: "flush" }
  | { op: "snapshot" }
  | { op: "delete"; which: "oldest" | "middle" | "newest" }
  | { op: "revert"; discardNewer: boolean }
  | { op: "reopen" };

/** Draws one operation; writes dominate, with sizes from a few bytes to several chunks. */
export function drawOp(rand: Rand, size: number, chunk: number): Op {
  const r = rand();
  if (r < 0.55) {
    const len = pick(rand, [1, 17, 512, chunk, chunk + 3, 3 * chunk, int(rand, 1, 4 * chunk)]);
    const offset = rand() < 0.5 ? int(rand, 0, size - len) : int(rand, 0, size / chunk - 1) * chunk;
    const data = Buffer.alloc(Math.min(len, size - offset));
    if (rand() < 0.9) for (let i = 0; i < data.length; i++) data[i] = int(rand, 1, 255);
    return { op: "write", offset, data };
  }
  if (r < 0.63) return { op: "flush" };
  if (r < 0.75) return { op: "snapshot" };
  if (r < 0.86) return { op: "delete", which: pick(rand, ["oldest", "middle", "newest"] as const) };
  if (r < 0.93) return { op: "revert", discardNewer: rand() < 0.5 };
  return { op: "reopen" };
}

export interface Subject {
  vol: CowVolume;
  host: HostFs;
  dir: string;
  opts: OpenOptions;
  /** Set by `apply` before a delete or revert starts: the snapshots it may remove, the revert target. */
  removing?: number[];
  reverting?: number;
}

/** Applies `op` to the volume, then to the model if the volume accepted it. Returns what it did. */
export async function apply(s: Subject, m: Model, op: Op, rand: Rand): Promise<string> {
  const ids = s.vol.snapshots().map((x) => x.id);
  switch (op.op) {
    case "write":
      try {
        await s.vol.write(op.offset, op.data);
      } catch (e) {
        if (isFsError(e, "ENOSPC")) return `write ${op.offset}+${op.data.length}: ENOSPC`;
        throw e;
      }
      op.data.copy(m.live, op.offset);
      return `write ${op.offset}+${op.data.length}`;
    case "flush":
      await s.vol.flush();
      return "flush";
    case "snapshot": {
      const info = await s.vol.createSnapshot({ name: `s${rand().toString(36).slice(2, 6)}` });
      m.snaps.set(info.id, Buffer.from(m.live));
      return `snapshot ${info.id}`;
    }
    case "delete": {
      if (ids.length === 0) return "delete: none";
      const pos =
        op.which === "oldest"
          ? 0
          : op.which === "newest"
            ? ids.length - 1
            : int(rand, 0, ids.length - 1);
      const id = ids[pos]!;
      s.removing = [id];
      await s.vol.deleteSnapshot(id);
      m.snaps.delete(id);
      return `delete ${id} (${op.which})`;
    }
    case "revert": {
      if (ids.length === 0) return "revert: none";
      const id = pick(rand, ids);
      s.reverting = id;
      s.removing = op.discardNewer ? ids.filter((k) => k > id) : [];
      try {
        await s.vol.revert(id, { discardNewer: op.discardNewer });
      } catch (e) {
        if (isFsError(e, "ENOSPC")) return `revert ${id}: ENOSPC`;
        throw e;
      }
      m.live = Buffer.from(m.snaps.get(id)!);
      if (op.discardNewer) for (const k of [...m.snaps.keys()]) if (k > id) m.snaps.delete(k);
      return `revert ${id}${op.discardNewer ? " discarding newer" : ""}`;
    }
    case "reopen":
      await s.vol.close();
      s.vol = await CowVolume.open(s.host, s.dir, s.opts);
      return "reopen";
  }
}

/**
 * Drops from the model the snapshots the volume evicted under its shadow storage limit; returns
 * a description of anything that is not a plain oldest-first eviction recorded in the store.
 */
export function syncEvictions(vol: CowVolume, m: Model): string | undefined {
  const present = new Set(vol.snapshots().map((x) => x.id));
  const evicted = new Set(vol.evictions().map((e) => e.id));
  const ids = [...m.snaps.keys()];
  const gone = ids.filter((id) => !present.has(id));
  for (const id of gone) {
    if (!evicted.has(id)) return `snapshot ${id} disappeared without an eviction record`;
    if (ids.indexOf(id) >= gone.length) return `snapshot ${id} was evicted before an older one`;
    m.snaps.delete(id);
  }
  const extra = [...present].filter((id) => !m.snaps.has(id));
  return extra.length > 0
    ? `volume has snapshots the model does not: ${extra.join(",")}`
    : undefined;
}

/** Reads the whole live volume and every snapshot; returns the first difference from the model. */
export async function compare(vol: CowVolume, m: Model): Promise<string | undefined> {
  const buf = Buffer.alloc(m.live.length);
  await vol.read(0, buf);
  let d = firstDiff(buf, m.live);
  if (d >= 0) return `live volume differs at byte ${d}: ${buf[d]} != ${m.live[d]}`;
  for (const [id, img] of m.snaps) {
    await vol.snapshotDevice(id).read(0, buf);
    d = firstDiff(buf, img);
    if (d >= 0) return `snapshot ${id} differs at byte ${d}: ${buf[d]} != ${img[d]}`;
  }
  return undefined;
}

export function firstDiff(a: Buffer, b: Buffer): number {
  if (a.equals(b)) return -1;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return a.length;
}
