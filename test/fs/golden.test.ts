// The golden filesystems of format versions 1 and 2, each made once by scripts/make-golden-fs.ts:
// today's code must read both exactly. The image is left as at a crash: one transaction only in the journal and
// one file unlinked while open. It works on copies; the fixture is never opened for writing.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { crc32c } from "@node-rs/crc32";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type BlockDevice,
  FileBlockDevice,
  MemoryBlockDevice,
  NodeHostFs,
} from "../../src/cow/index.js";
import { isDir, isLink, isReg } from "../../src/fs/attr.js";
import { directoryOf } from "../../src/fs/context.js";
import { FileSystem, ROOT, SUPERUSER } from "../../src/fs/filesystem.js";
import { check, fsck } from "../../src/fs/fsck.js";
import {
  BIG_ENTRIES,
  baseName,
  contents,
  dirOf,
  GOLDEN_FS_SIZE,
  GOLDEN_JOURNAL_BLOCKS,
  GOLDEN_NODES,
  GOLDEN_VERSIONS,
  type GoldenNode,
  goldenFs,
  JOURNAL_XATTR,
  pieces,
} from "./golden-fs-recipe.js";

// The v1 layout of a 4 MiB volume, written out here on purpose rather than imported from src/fs.
const BS = 4096;
const JOURNAL = { start: 1, blocks: GOLDEN_JOURNAL_BLOCKS };
const BITMAP = { start: 1 + GOLDEN_JOURNAL_BLOCKS, blocks: 1 };
const SYSTEM = BITMAP.start + 1;
const DATA = SYSTEM + 1;
const INODE = 256;

const repo = fileURLToPath(new URL("../..", import.meta.url));
const images = new Map(
  GOLDEN_VERSIONS.map((v) => [v, gunzipSync(readFileSync(join(repo, goldenFs(v))))]),
);
/** The image of the version under test (each describe block sets it before its tests). */
let pristine = images.get(1)!;
const byPath = new Map(GOLDEN_NODES.map((n) => [n.path, n]));
const orphan = GOLDEN_NODES.find((n) => n.orphan)!;
const dirs: string[] = [];
const opened: BlockDevice[] = [];

afterEach(async () => {
  for (const d of opened.splice(0)) await d.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** The image in a temporary host file, opened read-only: the filesystem as a snapshot sees it. */
async function readOnlyCopy(): Promise<BlockDevice> {
  const dir = mkdtempSync(join(tmpdir(), "shadowfs-golden-fs-"));
  dirs.push(dir);
  writeFileSync(join(dir, "fs.img"), pristine);
  const dev = await FileBlockDevice.open(new NodeHostFs(), join(dir, "fs.img"), { readOnly: true });
  opened.push(dev);
  return dev;
}

async function writableCopy(): Promise<MemoryBlockDevice> {
  const dev = new MemoryBlockDevice(GOLDEN_FS_SIZE);
  await dev.write(0, pristine);
  return dev;
}

const u64 = (b: Buffer, at: number) => Number(b.readBigUInt64LE(at));
const block = (n: number) => pristine.subarray(n * BS, (n + 1) * BS);

/** The raw 256 bytes of inode `ino`, found through the inode-table file's block map. */
function rawInode(ino: number): Buffer {
  const table = block(SYSTEM).subarray(0, INODE);
  const f = Math.floor(ino / 16);
  const ptr =
    f < 12
      ? table.readUInt32LE(104 + 4 * f)
      : block(table.readUInt32LE(152)).readUInt32LE(4 * (f - 12));
  return block(ptr).subarray((ino % 16) * INODE, ((ino % 16) + 1) * INODE);
}

const children = (dir: string) =>
  [
    ...GOLDEN_NODES.filter((n) => n.path !== "" && !n.orphan && dirOf(n.path) === dir).map((n) =>
      baseName(n.path),
    ),
    ...GOLDEN_NODES.flatMap((n) => n.links ?? [])
      .filter((l) => dirOf(l) === dir)
      .map(baseName),
  ].sort();

function nlinkOf(n: GoldenNode): number {
  if (n.orphan) return 0;
  if (isDir(n.mode))
    return (
      2 +
      GOLDEN_NODES.filter((c) => isDir(c.mode) && c.path !== "" && dirOf(c.path) === n.path).length
    );
  return 1 + (n.links?.length ?? 0);
}

/** Asserts that every node reads exactly as the recipe made it. */
async function expectGolden(fs: FileSystem, orphanKept: boolean): Promise<void> {
  for (const n of GOLDEN_NODES) {
    const what = n.path || "/";
    if (n.orphan && !orphanKept) {
      await expect(fs.getattr(n.ino), what).rejects.toThrow(/ENOENT/);
      continue;
    }
    if (n.path !== "" && !n.orphan) {
      const parent = byPath.get(dirOf(n.path))!;
      expect((await fs.lookup(parent.ino, baseName(n.path))).ino, what).toBe(n.ino);
    }
    const a = await fs.getattr(n.ino);
    expect(
      {
        ino: a.ino,
        mode: a.mode,
        uid: a.uid,
        gid: a.gid,
        nlink: a.nlink,
        generation: a.generation,
        rdev: a.rdev,
        birthtime: a.birthtime,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
      },
      what,
    ).toEqual({
      ino: n.ino,
      mode: n.mode,
      uid: n.uid,
      gid: n.gid,
      nlink: nlinkOf(n),
      generation: n.generation,
      rdev: n.rdev ?? 0,
      birthtime: n.birth,
      atime: n.atime,
      mtime: n.mtime,
      ctime: n.ctime,
    });
    const xattrs = {
      ...(n.xattrs ?? {}),
      ...(n.path === "" ? { [JOURNAL_XATTR.name]: JOURNAL_XATTR.value } : {}),
    };
    expect((await fs.listxattr(n.ino)).sort(), what).toEqual(Object.keys(xattrs).sort());
    for (const [k, v] of Object.entries(xattrs))
      expect((await fs.getxattr(n.ino, k)).equals(v), `${what} ${k}`).toBe(true);

    if (isDir(n.mode)) {
      const listed = (await fs.readdir(n.ino, 0n, 1000)).map((e) => e.name.toString());
      expect(listed.slice(0, 2)).toEqual([".", ".."]);
      expect(listed.slice(2).sort(), what).toEqual(children(n.path));
      expect((await fs.lookup(n.ino, "..")).ino).toBe(
        n.path === "" ? ROOT : byPath.get(dirOf(n.path))!.ino,
      );
      const stats = await directoryOf(fs.context, await fs.context.table.get(n.ino)).stats();
      expect(a.size, what).toBe(stats.blocks * BS);
      expect(a.blocks / 8, what).toBe(stats.blocks + (Object.keys(xattrs).length > 0 ? 1 : 0));
      if (n.blocks !== undefined) expect(a.blocks / 8, what).toBe(n.blocks);
      continue;
    }
    expect(a.blocks / 8, what).toBe(n.blocks);
    if (isLink(n.mode)) {
      expect((await fs.readlink(n.ino)).toString(), what).toBe(n.target);
      expect(a.size).toBe(Buffer.byteLength(n.target!));
    } else if (isReg(n.mode)) {
      const { size, writes } = pieces(n);
      expect(a.size, what).toBe(size);
      if (size <= 1 << 20) {
        expect((await fs.read(n.ino, 0, size + 100)).equals(contents(n)), what).toBe(true);
      } else {
        for (const w of writes) {
          const got = await fs.read(n.ino, w.offset - 5, w.bytes.length + 10);
          const want = Buffer.concat([Buffer.alloc(5), w.bytes, Buffer.alloc(5)]);
          const end = Math.min(size, w.offset + w.bytes.length + 5);
          expect(got.equals(want.subarray(0, end - (w.offset - 5))), what).toBe(true);
        }
        expect((await fs.read(n.ino, 0, 3 * BS)).equals(Buffer.alloc(3 * BS))).toBe(true);
        expect((await fs.read(n.ino, size - 10, 100)).length).toBe(10);
      }
    } else expect(a.size, what).toBe(0);
  }
  const big = await directoryOf(
    fs.context,
    await fs.context.table.get(byPath.get("big")!.ino),
  ).stats();
  expect(big.entries).toBe(BIG_ENTRIES + 1);
  expect(big.depth).toBeGreaterThanOrEqual(1);
  expect(await fs.orphans()).toEqual(orphanKept ? [orphan.ino] : []);
}

describe.each(GOLDEN_VERSIONS)("golden filesystem v%i", (version) => {
  beforeAll(() => {
    pristine = images.get(version)!;
  });

  it("has its layout: superblock, a journal holding one transaction, the orphan list", () => {
    expect(pristine.length).toBe(GOLDEN_FS_SIZE);
    const sb = block(0);
    expect(sb.toString("latin1", 0, 8)).toBe("SHDWFSSB");
    expect(sb.readUInt32LE(8)).toBe(version);
    expect(sb.readUInt32LE(12)).toBe(BS);
    expect(u64(sb, 16)).toBe(GOLDEN_FS_SIZE / BS);
    expect(sb.toString("hex", 24, 40)).toMatch(/^[0-9a-f]{32}$/);
    expect(u64(sb, 40)).toBeGreaterThan(Date.UTC(2025, 0, 1));
    expect([u64(sb, 48), sb.readUInt32LE(56)]).toEqual([JOURNAL.start, JOURNAL.blocks]);
    expect([u64(sb, 64), sb.readUInt32LE(72)]).toEqual([BITMAP.start, BITMAP.blocks]);
    expect([u64(sb, 80), u64(sb, 88)]).toEqual([DATA, SYSTEM]);
    expect(sb.readUInt32LE(508)).toBe(crc32c(sb.subarray(0, 508)));
    expect(sb.subarray(512).every((b) => b === 0)).toBe(true);

    const jh = block(JOURNAL.start);
    expect(jh.toString("latin1", 0, 8)).toBe("SHDWJRNL");
    expect([jh.readUInt32LE(8), jh.readUInt32LE(12), u64(jh, 16)]).toEqual([
      1,
      JOURNAL.blocks,
      JOURNAL.start,
    ]);
    expect(jh.readUInt32LE(60)).toBe(crc32c(jh.subarray(0, 60)));
    const seq = u64(jh, 24);
    const desc = block(JOURNAL.start + 1);
    expect(desc.toString("latin1", 0, 8)).toBe("SHDWJDSC");
    expect([u64(desc, 8), desc.readUInt32LE(20)]).toEqual([seq, 0]);
    const count = desc.readUInt32LE(16);
    expect(count).toBeGreaterThan(3);
    const homes = Array.from({ length: count }, (_, i) => u64(desc, 64 + 8 * i));
    expect(homes).toContain(BITMAP.start); // the new directory's blocks were allocated
    for (const h of homes) expect(h).toBeGreaterThanOrEqual(BITMAP.start);
    const commit = block(JOURNAL.start + 2 + count);
    expect(commit.toString("latin1", 0, 8)).toBe("SHDWJCMT");
    expect([u64(commit, 8), commit.readUInt32LE(16)]).toEqual([seq, count]);
    expect(commit.readUInt32LE(20)).toBe(
      crc32c(pristine.subarray((JOURNAL.start + 1) * BS, (JOURNAL.start + 2 + count) * BS)),
    );
    expect(commit.readUInt32LE(60)).toBe(crc32c(commit.subarray(0, 60)));
    // Nothing after it: one transaction to replay.
    expect(block(JOURNAL.start + 3 + count).toString("latin1", 0, 8)).not.toBe("SHDWJDSC");

    const sys = block(SYSTEM);
    for (const slot of [0, 1])
      expect(sys.readUInt32LE(slot * INODE + 252)).toBe(
        crc32c(sys.subarray(slot * INODE, slot * INODE + 252)),
      );
    const list = sys.subarray(512, 528);
    expect([list.readUInt32LE(0), list.readUInt32LE(4), list.readUInt32LE(8)]).toEqual([
      orphan.ino,
      1,
      0,
    ]);
    expect(list.readUInt32LE(12)).toBe(crc32c(list.subarray(0, 12)));
    expect(sys.subarray(528).every((b) => b === 0)).toBe(true);
  });

  it("has its inodes: fields, times, flags, the names they list and the orphan's links", () => {
    const small = byPath.get("small.txt")!;
    const r = rawInode(small.ino);
    expect(r.readUInt32LE(252)).toBe(crc32c(r.subarray(0, 252)));
    expect([r.readUInt32LE(0), r.readUInt32LE(4), r.readUInt32LE(8), r.readUInt32LE(12)]).toEqual([
      small.mode,
      small.uid,
      small.gid,
      2,
    ]);
    expect([u64(r, 16), u64(r, 24)]).toEqual([20, small.blocks]);
    const time = (at: number) => ({
      sec: Number(r.readBigInt64LE(at)),
      nsec: r.readUInt32LE(at + 8),
    });
    expect([time(32), time(44), time(56), time(68)]).toEqual([
      small.atime,
      small.mtime,
      small.ctime,
      small.birth,
    ]);
    expect([r.readUInt32LE(80), r.readUInt32LE(84), u64(r, 88)]).toEqual([0, 2, 0]);
    const xblock = u64(r, 96);
    expect(block(xblock).toString("latin1", 0, 8)).toBe("SHDWXATR");
    expect(block(xblock).readUInt32LE(8)).toBe(3);
    expect(r.readUInt32LE(104)).toBeGreaterThanOrEqual(DATA);
    expect(r.subarray(108, 172).every((b) => b === 0)).toBe(true);
    // Format 2 lists its two names (directory, key): the root's entry and big/'s; format 1 none.
    const listed = [0, 1, 2, 3, 4, 5].map((i) => r.readUInt32LE(172 + 12 * i));
    expect(listed.slice(2)).toEqual([0, 0, 0, 0]);
    expect(r.subarray(244, 252).every((b) => b === 0)).toBe(true);
    if (version === 1) expect(listed).toEqual([0, 0, 0, 0, 0, 0]);
    else expect(listed.slice(0, 2).sort()).toEqual([ROOT, byPath.get("big")!.ino].sort());

    const short = rawInode(byPath.get("sym-short")!.ino);
    expect(short.readUInt32LE(80)).toBe(1); // inline
    expect(short[104]).toBe("small.txt".length);
    expect(short.toString("utf8", 105, 105 + short[104]!)).toBe("small.txt");

    const o = rawInode(orphan.ino);
    expect(o.readUInt32LE(12)).toBe(0); // no links
    expect(o.readUInt32LE(80)).toBe(2); // on the orphan list
    expect([o.readUInt32LE(164), o.readUInt32LE(168)]).toEqual([0, 0]); // alone on it
    expect(u64(o, 24)).toBe(orphan.blocks);
    expect(o.subarray(172, 252).every((b) => b === 0)).toBe(true); // no name listed
  });

  it("opens read-only, replays the journal in memory, and reads every node as made", async () => {
    const dev = await readOnlyCopy();
    const fs = await FileSystem.open(dev);
    expect(fs.readOnly).toBe(true);
    expect(fs.recovery).toEqual({ replayed: 1, freedOrphans: [], finishedTruncations: [] });
    await expectGolden(fs, true);
    await expect(fs.create(ROOT, "x", 0o644, SUPERUSER)).rejects.toThrow(/EROFS/);
    await fs.release(orphan.ino); // a read-only filesystem frees nothing
    expect(await fs.orphans()).toEqual([orphan.ino]);
  });

  it("checks clean, with the orphan as a note", async () => {
    const report = await fsck(await readOnlyCopy());
    expect(report.problems).toEqual([]);
    expect(report).toMatchObject({ ok: true, orphans: 1 });
    expect(report.notes).toEqual([
      expect.stringMatching(new RegExp(`^inode ${orphan.ino} is an orphan`)),
    ]);
    expect(report.directories).toBe(GOLDEN_NODES.filter((n) => isDir(n.mode)).length);
  });

  it("opens read-write: replays, frees the orphan and its blocks, reads the rest as made", async () => {
    const kept = await fsck(await readOnlyCopy());
    const dev = await writableCopy();
    const fs = await FileSystem.open(dev);
    expect(fs.recovery).toEqual({
      replayed: 1,
      freedOrphans: [orphan.ino],
      finishedTruncations: [],
    });
    await expectGolden(fs, false);
    const report = await check(fs);
    expect(report).toMatchObject({ ok: true, notes: [], orphans: 0 });
    expect(report.blocksUsed).toBe(kept.blocksUsed - orphan.blocks!);
    await fs.close();
    const again = await FileSystem.open(dev);
    expect(again.recovery).toEqual({ replayed: 0, freedOrphans: [], finishedTruncations: [] });
    await expectGolden(again, false);
  });
});
