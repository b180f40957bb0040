// An incremental stream against the store it is received into: whether it fits (`plan`), and
// writing the stream kept in `receive/` to production (`apply`, completed by an open after a
// crash). It never reads a stream that was not kept and checked whole.

import { createReadStream } from "node:fs";
import { rm } from "node:fs/promises";
import {
  type CowVolume,
  type SnapshotInfo,
  type StreamHeader,
  StreamReader,
} from "../cow/index.js";
import { eexist, einval, enoent } from "../errors.js";
import { gmtName } from "../mount/index.js";
import { storePaths } from "./paths.js";
import { describe, readStaged, type Staged, segmentFile } from "./receive-staging.js";
import type { Service } from "./service.js";

/** What a snapshot received keeps of the one sent. */
export const snapshotOptions = (h: StreamHeader) => ({
  createdAt: h.snapshot.createdAt,
  name: h.snapshot.name,
  setId: h.snapshot.setId,
  guid: h.snapshot.guid,
});

/**
 * Why an incremental stream cannot apply to the store `s` as it is: its base missing, sizes that
 * differ, the snapshot there already or a name taken (always refused); `moved` when production
 * changed since the base or newer snapshots follow it (refused unless forced). Production's
 * staged writes are flushed first, so that every change counts.
 */
export async function plan(
  s: Service,
  h: StreamHeader,
): Promise<{ base: SnapshotInfo; moved?: string }> {
  const { volume } = s;
  if (!h.base) throw einval(`a full stream makes a new store; ${s.store} holds one`);
  if (h.volumeSize !== volume.size || h.chunkSize !== volume.chunkSize)
    throw einval(
      `the stream's volume is ${h.volumeSize} bytes in ${h.chunkSize}-byte chunks; ` +
        `${s.store}'s is ${volume.size} in ${volume.chunkSize}`,
    );
  const all = volume.snapshots();
  const has = all.find((x) => x.guid === h.snapshot.guid);
  if (has) throw eexist(`${s.store} already has snapshot ${describe(h.snapshot)}`);
  const base = all.find((x) => x.guid === h.base!.guid);
  if (!base)
    throw enoent(
      `the stream's base, snapshot ${describe(h.base)}, is not in ${s.store}: ` +
        "send from a snapshot it has, or a full stream into a new store",
    );
  const gmt = gmtName(h.snapshot.createdAt);
  if (all.some((x) => gmtName(x.createdAt) === gmt))
    throw eexist(`${s.store} has another snapshot named ${gmt}`);
  const name = h.snapshot.name;
  if (name !== undefined && all.some((x) => x.name === name))
    throw eexist(`${s.store} has another snapshot named "${name}"`);
  const newer = all.filter((x) => x.id > base.id);
  if (newer.length > 0)
    return {
      base,
      moved: `${s.store} has snapshots newer than the stream's base ${describe(base)}: ${newer.map(describe).join(", ")}`,
    };
  await s.flush();
  const changed = volume.preservedChunks(base.id);
  if (changed > 0)
    return {
      base,
      moved: `production of ${s.store} changed since the stream's base ${describe(base)} (${changed} chunks written)`,
    };
  return { base };
}

/**
 * Writes the chunks of the stream kept in `dir` to the live volume (each segment as far as it was
 * kept; the last one whole) and takes the snapshot it holds, then forgets the stream. Repeatable:
 * an open after a crash runs it again, and the snapshot is taken once.
 */
export async function apply(volume: CowVolume, dir: string, st: Staged): Promise<SnapshotInfo> {
  let info = volume.snapshots().find((x) => x.guid === st.header.snapshot.guid);
  if (!info) {
    const cs = volume.chunkSize;
    const zero = Buffer.alloc(cs);
    for (const [i, length] of st.segments.entries()) {
      const source = createReadStream(segmentFile(dir, i), { start: 0, end: length - 1 });
      const last = i === st.segments.length - 1;
      for await (const c of new StreamReader(source).chunks({ partial: !last })) {
        if (c.data) await volume.write(c.chunk * cs, c.data);
        else for (let k = 0; k < c.count; k++) await volume.write((c.chunk + k) * cs, zero);
      }
    }
    info = await volume.createSnapshot(snapshotOptions(st.header));
  }
  await rm(dir, { recursive: true, force: true });
  return info;
}

/**
 * At a read-write open, before the filesystem is opened: completes a receive that was being
 * applied, keeps one that was cut (to be resumed) and removes anything else an interrupted receive
 * left. Says which snapshot it completed.
 */
export async function finishReceive(volume: CowVolume, store: string): Promise<string | undefined> {
  const dir = storePaths(store).receive;
  const st = await readStaged(dir);
  if (st?.state === "receiving") return undefined;
  if (!st) {
    await rm(dir, { recursive: true, force: true });
    return undefined;
  }
  const info = await apply(volume, dir, st);
  return gmtName(info.createdAt);
}
