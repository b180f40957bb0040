// `snapshot diff` of an open store: resolves the two points (snapshots or production), asks the
// volume which chunks changed between them and the filesystem what those changes are. No tree walk.

import { einval, FsError } from "../errors.js";
import { type Change, diffViews } from "../fs/diff.js";
import { MAX_UNREAD_BYTES } from "../snapshot/rpc/peer.js";
import type { Service } from "./service.js";
import { snapshotFs } from "./versions.js";

export type { Change as DiffChange } from "../fs/diff.js";

/** The name that stands for the live volume, as FROM or TO. */
export const PRODUCTION = "production";

/**
 * The changes from `from` to `to` (each a snapshot's `@GMT` name, user-given name or id, or
 * "production"), sorted by path. `from` must not be newer than `to` (EINVAL); an unknown snapshot
 * is ENOENT. With production as `to`, changes to it wait meanwhile (after it is flushed, so that
 * every change is in a chunk the store knows of); a diff of two snapshots holds nothing.
 */
export async function snapshotDiff(s: Service, from: string, to: string): Promise<Change[]> {
  const changes = await changesBetween(s, from, to);
  // A daemon answers in one message, which it never lets grow past what a client may leave
  // unread: past that, one clear error rather than a dropped connection.
  if (s.mount) {
    const bytes = Buffer.byteLength(JSON.stringify(changes));
    if (bytes > MAX_UNREAD_BYTES - (64 << 10))
      throw new FsError(
        "E2BIG",
        `the diff has ${changes.length} changes (${bytes} bytes of JSON), more than the control socket carries in one answer: diff nearer points, or unmount and diff the store`,
      );
  }
  return changes;
}

async function changesBetween(s: Service, from: string, to: string): Promise<Change[]> {
  const older = from === PRODUCTION ? undefined : s.find(from);
  const newer = to === PRODUCTION ? undefined : s.find(to);
  if (!older) {
    if (!newer) return [];
    throw einval(`FROM (production) is newer than TO (${to}): name the older point first`);
  }
  const chunkBlocks = s.volume.chunkSize / 4096;
  const blocksOf = (chunks: number[]) => {
    const out: number[] = [];
    for (const c of chunks) for (let i = 0; i < chunkBlocks; i++) out.push(c * chunkBlocks + i);
    return out;
  };
  if (newer && newer.id === older.id) return [];
  if (newer && s.volume.position(newer.id) < s.volume.position(older.id))
    throw einval(`FROM (${from}) is newer than TO (${to}): name the older snapshot first`);
  const olderFs = await snapshotFs(s, older);
  if (newer) {
    const newerFs = await snapshotFs(s, newer);
    return diffViews(olderFs, newerFs, blocksOf(s.volume.changedBetween(older.id, newer.id)));
  }
  return s.gate.withExclusive(async () => {
    await s.flush();
    return diffViews(olderFs, s.fs, blocksOf(s.volume.changedBetween(older.id)));
  });
}
