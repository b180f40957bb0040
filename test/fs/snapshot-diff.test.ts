// `snapshot diff` against a walk of both trees: seeded random operations through the filesystem
// API (files, directories, renames across directories, hard links, symlinks, xattrs, files
// unlinked while open) on a copy-on-write volume, snapshots taken, deleted and reverted to at random
// points,
// and the diff of random pairs of points compared with the reference. SEED=n repeats one sequence, STEPS=n sets its length (2500).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CowVolume, NodeHostFs } from "../../src/cow/index.js";
import { isFsError } from "../../src/errors.js";
import { type Change, diffViews } from "../../src/fs/diff.js";
import { FileSystem, ROOT } from "../../src/fs/filesystem.js";
import { check } from "../../src/fs/fsck.js";
import type { Time } from "../../src/fs/inode.js";
import { decodeSuperblock, encodeSuperblock, FS_VERSION } from "../../src/fs/superblock.js";
import { canonical, referenceDiff, walkTree } from "../helpers/diff-reference.js";
import { int, pick, type Rand, seededBytes, seeds, withSeed } from "../helpers/random.js";

const STEPS = Number(process.env.STEPS ?? 2500);
const NAMES = ["a", "b", "c", "d", "e", "long name", "f.txt", "\u00e9t\u00e9"];
const quiet = { info() {}, warn() {}, error() {} };
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A clock that moves on by a microsecond at each call: every change gets a later ctime. */
function ticking(): () => Time {
  let t = 0;
  return () => {
    t += 1000;
    return { sec: 1_700_000_000 + Math.floor(t / 1e9), nsec: t % 1e9 };
  };
}

async function setup(chunkSize: number, version: number, seed: number) {
  const dir = mkdtempSync(join(tmpdir(), "shadowfs-sdiff-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const vol = await CowVolume.create(new NodeHostFs(), join(dir, "store"), {
    volumeSize: 64 << 20,
    chunkSize,
    logger: quiet,
  });
  cleanups.push(() => vol.close());
  // Directories' hash keys from the seed: names collide and order alike in every run of it.
  const dirKeys = seededBytes(seed ^ 0xd1e5, 16);
  await FileSystem.mkfs(vol, { dirKeys });
  if (version !== FS_VERSION) {
    // A filesystem of an older format: the same blocks, the superblock says which rules hold.
    const head = Buffer.alloc(4096);
    await vol.read(0, head);
    await vol.write(0, encodeSuperblock({ ...decodeSuperblock(head, vol.size / 4096), version }));
  }
  const clock = ticking();
  const fs = await FileSystem.open(vol, { clock, dirKeys });
  return { vol, fs, clock, dirKeys };
}

type Setup = Awaited<ReturnType<typeof setup>>;

/** The engine's diff from snapshot `from` to snapshot `to` (production when undefined). */
async function engineDiff({ vol, fs }: Setup, from: number, to?: number): Promise<Change[]> {
  const older = await FileSystem.open(vol.snapshotDevice(from));
  if (to === undefined) await fs.flush();
  const newer = to === undefined ? fs : await FileSystem.open(vol.snapshotDevice(to));
  const per = vol.chunkSize / 4096;
  const blocks = vol
    .changedBetween(from, to)
    .flatMap((c) => Array.from({ length: per }, (_, i) => c * per + i));
  return diffViews(older, newer, blocks);
}

async function referenceOf({ vol, fs }: Setup, from: number, to?: number): Promise<Change[]> {
  const older = await FileSystem.open(vol.snapshotDevice(from));
  const newer = to === undefined ? fs : await FileSystem.open(vol.snapshotDevice(to));
  return referenceDiff(await walkTree(older), await walkTree(newer));
}

const liveDir = async (fs: FileSystem, ino: number) => {
  const a = await fs.getattr(ino).catch(() => undefined);
  return a !== undefined && (a.mode & 0o170000) === 0o040000 && a.nlink > 0;
};

/** One random change through the API; errors a real caller could get are part of the game. */
async function step(fs: FileSystem, rand: Rand, dirs: number[]): Promise<void> {
  let dir = pick(rand, dirs);
  // Directories removed since (or their numbers reused by files) leave the list when met.
  for (let a = await liveDir(fs, dir); !a; a = await liveDir(fs, dir)) {
    dirs.splice(dirs.indexOf(dir), 1);
    dir = pick(rand, dirs);
  }
  const entries = (await fs.readdir(dir, 0n, 64)).filter((e) => e.cookie > 2n);
  const some = entries.length > 0 ? pick(rand, entries) : undefined;
  const name = pick(rand, NAMES);
  const r = rand();
  const data = () => Buffer.alloc(int(rand, 1, rand() < 0.1 ? 70_000 : 3000), int(rand, 0, 255));
  if (r < 0.16) {
    const f = await fs.create(dir, name, 0o644, { uid: 0, gid: 0, groups: [] });
    await fs.write(f.ino, 0, data());
  } else if (r < 0.28) {
    if (some?.type === 8) await fs.write(some.ino, int(rand, 0, 60_000), data());
  } else if (r < 0.33) {
    if (some?.type === 8) await fs.setattr(some.ino, { size: int(rand, 0, 80_000) });
  } else if (r < 0.38) {
    if (some)
      await fs.setattr(some.ino, { mode: int(rand, 0, 0o777) | (some.type === 4 ? 0o700 : 0) });
  } else if (r < 0.5) {
    if (some) await fs.rename(dir, some.name, pick(rand, dirs), name);
  } else if (r < 0.58) {
    if (some && some.type !== 4) await fs.link(some.ino, pick(rand, dirs), name);
  } else if (r < 0.66) {
    if (some && some.type !== 4) await fs.unlink(dir, some.name);
  } else if (r < 0.72) {
    if (some?.type === 4) await fs.rmdir(dir, some.name);
  } else if (r < 0.84) {
    dirs.push((await fs.mkdir(dir, name, 0o755, { uid: 0, gid: 0, groups: [] })).ino);
  } else if (r < 0.9) {
    const target = rand() < 0.5 ? "t" : "x".repeat(int(rand, 60, 300));
    await fs.symlink(dir, name, target, { uid: 0, gid: 0, groups: [] });
  } else if (r < 0.95) {
    if (some) await fs.setxattr(some.ino, `user.${name}`, data().subarray(0, 40));
  } else if (some) {
    // More names for one file than an inode lists: the diff looks for the rest.
    for (let i = 0; i < 8 && some.type === 8; i++)
      await fs.link(some.ino, pick(rand, dirs), `${name}${i}`);
  }
}

async function run(seed: number, chunkSize: number, version = FS_VERSION): Promise<void> {
  await withSeed(seed, async (rand) => {
    const s = await setup(chunkSize, version, seed);
    const { vol } = s;
    const dirs = [ROOT];
    const points: number[] = [];
    const open = new Set<number>();
    let compared = 0;
    const kinds = new Map<string, number>();
    for (let i = 0; i < STEPS; i++) {
      try {
        await step(s.fs, rand, dirs);
      } catch (e) {
        if (!isFsError(e) || e.code === "EIO") throw e;
      }
      if (rand() < 0.02) {
        await s.fs.flush();
        points.push((await vol.createSnapshot()).id);
      }
      if (points.length > 0 && rand() < 0.002) {
        // Production reverted to a snapshot (newer ones kept), as the service does it.
        for (const ino of open) await s.fs.release(ino);
        open.clear();
        await s.fs.flush();
        await vol.revert(pick(rand, points));
        s.fs = await FileSystem.open(vol, { clock: s.clock, dirKeys: s.dirKeys });
        dirs.splice(1);
      }
      if (points.length > 3 && rand() < 0.003) {
        // A snapshot deleted: its preserved chunks merge into its older neighbour's area.
        const gone = pick(rand, points);
        await vol.deleteSnapshot(gone);
        points.splice(points.indexOf(gone), 1);
      }
      if (rand() < 0.01) {
        // A file unlinked while open (an orphan until released), or one released.
        const held = [...open];
        if (held.length > 0 && rand() < 0.5) {
          const ino = pick(rand, held);
          open.delete(ino);
          await s.fs.release(ino);
        } else {
          const f = await s.fs.create(ROOT, `open-${i}`, 0o644, { uid: 0, gid: 0, groups: [] });
          await s.fs.write(f.ino, 0, Buffer.from("still open"));
          await s.fs.open(f.ino);
          open.add(f.ino);
          if (rand() < 0.7) await s.fs.unlink(ROOT, `open-${i}`);
        }
      }
      if (points.length > 0 && (rand() < 0.01 || i === STEPS - 1)) {
        const from = pick(rand, points);
        const later = points.filter((p) => p > from);
        const to = later.length > 0 && rand() < 0.6 ? pick(rand, later) : undefined;
        const got = canonical(await engineDiff(s, from, to));
        const want = await referenceOf(s, from, to);
        expect(got, `step ${i}: diff from snapshot ${from} to ${to ?? "production"}`).toEqual(want);
        compared++;
        for (const c of want) kinds.set(c.change, (kinds.get(c.change) ?? 0) + 1);
      }
    }
    expect(compared).toBeGreaterThan(0);
    for (const ino of open) await s.fs.release(ino);
    // A sequence of the default length has met every kind of change.
    if (STEPS >= 1000)
      for (const kind of ["added", "removed", "modified", "renamed"])
        expect(kinds.get(kind), kind).toBeGreaterThan(0);
    const report = await check(s.fs);
    expect(report.problems).toEqual([]);
  });
}

describe("snapshot diff against a walk of both trees", () => {
  for (const seed of seeds(2)) {
    it(`seed ${seed}, 64 KiB chunks`, () => run(seed, 64 << 10), 300_000);
  }
  it("a 4 KiB-chunk store", () => run(seeds(1)[0]!, 4096), 300_000);
  it(
    "a format-1 filesystem, whose inodes list no names",
    () => run(seeds(1)[0]!, 64 << 10, 1),
    300_000,
  );
});
