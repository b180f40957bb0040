// Builds the golden filesystem image of the current format version (test/fixtures/golden-fs-vN.img.gz)
// from the recipe in test/fs/golden-fs-recipe.ts. It never overwrites an existing fixture unless
// given --force. Images of older versions were made by the code of their version and stay as made.
//
// Usage: tsx scripts/make-golden-fs.ts [--force]
// The superblock holds a random uuid and the creation time, and every directory a random hash
// key: the image is made once and committed; regenerating it is a deliberate change to review,
// not a build step.
//
// The image is left as a crash would leave it at a precise instant: one file unlinked while open
// (on the orphan list), and the last transaction committed to the journal but not yet written to
// its home blocks, so that an open must replay it.

import { existsSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { type BlockDevice, MemoryBlockDevice } from "../src/cow/index.js";
import { isDir, isLink, S_IFMT } from "../src/fs/attr.js";
import { directoryOf } from "../src/fs/context.js";
import { FileSystem, ROOT, SUPERUSER } from "../src/fs/filesystem.js";
import { check } from "../src/fs/fsck.js";
import type { Time } from "../src/fs/inode.js";
import { FS_VERSION } from "../src/fs/superblock.js";
import {
  baseName,
  DOOMED,
  dirOf,
  GOLDEN_FS_SIZE,
  GOLDEN_JOURNAL_BLOCKS,
  GOLDEN_NODES,
  type GoldenNode,
  goldenFs,
  JOURNAL_TIME,
  JOURNAL_XATTR,
  pieces,
} from "../test/fs/golden-fs-recipe.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const target = join(root, goldenFs(FS_VERSION));
const BS = 4096;

/** A read-only view of a device's bytes, as a snapshot is. */
class ReadOnlyImage implements BlockDevice {
  readonly readOnly = true;
  readonly blockSize = BS;
  constructor(private readonly bytes: Buffer) {}
  get size(): number {
    return this.bytes.length;
  }
  async read(offset: number, into: Uint8Array): Promise<void> {
    into.set(this.bytes.subarray(offset, offset + into.length));
  }
  async write(): Promise<void> {
    throw new Error("read-only");
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}

async function image(dev: BlockDevice): Promise<Buffer> {
  const b = Buffer.alloc(dev.size);
  await dev.read(0, b);
  return b;
}

async function main(): Promise<number> {
  if (existsSync(target) && !process.argv.includes("--force")) {
    console.error(
      `golden-fs: ${relative(root, target)} exists; a new one changes the image (pass --force to replace it)`,
    );
    return 1;
  }
  let now: Time = GOLDEN_NODES[0]!.birth;
  const clock = () => ({ ...now });
  const dev = new MemoryBlockDevice(GOLDEN_FS_SIZE);
  await FileSystem.mkfs(dev, { journalBlocks: GOLDEN_JOURNAL_BLOCKS, clock });
  const fs = await FileSystem.open(dev, { clock });

  const inoOf = new Map<string, number>([["", ROOT]]);
  const make = async (n: GoldenNode): Promise<number> => {
    now = n.birth;
    const parent = inoOf.get(dirOf(n.path))!;
    const name = baseName(n.path);
    // Made by root, then given to its owner: root may make anything anywhere.
    const type = n.mode & S_IFMT;
    let made = isDir(type)
      ? await fs.mkdir(parent, name, n.mode, SUPERUSER)
      : isLink(type)
        ? await fs.symlink(parent, name, n.target!, SUPERUSER)
        : await fs.mknod(parent, name, n.mode, n.rdev ?? 0, SUPERUSER);
    if (made.uid !== n.uid || made.gid !== n.gid)
      made = await fs.setattr(made.ino, { uid: n.uid, gid: n.gid });
    if (made.ino !== n.ino) throw new Error(`${n.path}: got inode ${made.ino}, not ${n.ino}`);
    inoOf.set(n.path, made.ino);
    const { size, writes } = pieces(n);
    for (const w of writes) await fs.write(made.ino, w.offset, w.bytes);
    if (n.writes && size !== (await fs.getattr(made.ino)).size)
      await fs.setattr(made.ino, { size });
    for (const [k, v] of Object.entries(n.xattrs ?? {})) await fs.setxattr(made.ino, k, v);
    return made.ino;
  };

  // A name made and removed first: the next file reuses its number, one generation on.
  now = GOLDEN_NODES[1]!.birth;
  await fs.create(ROOT, DOOMED, 0o644, SUPERUSER);
  await fs.unlink(ROOT, DOOMED);

  const body = GOLDEN_NODES.filter((n) => n.path !== "" && !n.journal);
  for (const n of body) await make(n);
  for (const n of body)
    for (const l of n.links ?? []) await fs.link(n.ino, inoOf.get(dirOf(l))!, baseName(l));
  for (const n of body.filter((n) => n.orphan)) {
    await fs.open(n.ino); // never released: the image holds it as an orphan
    await fs.unlink(inoOf.get(dirOf(n.path))!, baseName(n.path));
  }
  // Last, every node's attributes and times: its ctime is the clock at this setattr.
  for (const n of GOLDEN_NODES.filter((n) => !n.journal)) {
    now = n.ctime;
    await fs.setattr(n.ino, {
      mode: n.mode,
      uid: n.uid,
      gid: n.gid,
      atime: n.atime,
      mtime: n.mtime,
    });
  }
  await fs.flush();

  // The last transaction: committed to the journal; then its home blocks are put back as they
  // were, as if the power had failed between the journal's flush and the home writes.
  const before = await image(dev);
  now = JOURNAL_TIME;
  for (const n of GOLDEN_NODES.filter((n) => n.journal)) await make(n);
  await fs.setxattr(ROOT, JOURNAL_XATTR.name, JOURNAL_XATTR.value);
  await fs.fsync();
  const after = await image(dev);
  const { journal } = fs.context.sb;
  const logStart = journal.start * BS;
  const logEnd = (journal.start + journal.blocks) * BS;
  const out = Buffer.from(before);
  after.copy(out, logStart, logStart, logEnd);
  if (out.subarray(logStart, logEnd).equals(before.subarray(logStart, logEnd)))
    throw new Error("the last transaction did not reach the journal");

  const ro = await FileSystem.open(new ReadOnlyImage(out));
  if (ro.recovery.replayed !== 1) throw new Error(`replayed ${ro.recovery.replayed} transactions`);
  const report = await check(ro);
  const orphans = GOLDEN_NODES.filter((n) => n.orphan).map((n) => n.ino);
  if (!report.ok || report.orphans !== orphans.length) {
    console.error(`golden-fs: the image does not check as planned: ${JSON.stringify(report)}`);
    return 1;
  }
  const big = await directoryOf(ro.context, await ro.context.table.get(inoOf.get("big")!)).stats();
  if (big.depth < 1) throw new Error(`big/ did not split: ${JSON.stringify(big)}`);

  const gz = gzipSync(out, { level: 9 });
  writeFileSync(target, gz);
  console.log(
    `golden-fs: wrote ${relative(root, target)} (${gz.length} bytes; ${out.length} uncompressed)`,
  );
  console.log(
    `golden-fs: big/ holds ${big.entries} entries in ${big.blocks} blocks, depth ${big.depth}`,
  );
  return 0;
}

process.exitCode = await main();
