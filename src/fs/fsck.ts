// The filesystem checker: walks the tree from the root and the orphan list, and cross-checks
// directories, inodes, link counts, block ownership and both bitmaps. It never repairs.

import type { BlockDevice } from "../cow/index.js";
import { dirType, isDir, isLink, isReg } from "./attr.js";
import { blocksOf } from "./block-map.js";
import { directoryOf, type FsContext, ROOT } from "./context.js";
import { keyOfCookie } from "./directory-format.js";
import { FileSystem } from "./filesystem.js";
import { FLAG_ORPHAN, type Inode, type NameRef } from "./inode.js";
import { NAMES_SINCE, nameRefProblem } from "./name-refs.js";

const BS = 4096;

export interface FsckReport {
  ok: boolean;
  problems: string[];
  /** What is in order but unfinished: orphans that the next read-write open frees or finishes. */
  notes: string[];
  /** Inodes on the orphan list. */
  orphans: number;
  directories: number;
  files: number;
  blocksUsed: number;
}

/**
 * Opens the filesystem on `dev` (read-only devices too) and checks all of it. Opening replays
 * the journal (onto a writable device) but leaves the orphan list as it is, to be reported.
 */
export async function fsck(dev: BlockDevice): Promise<FsckReport> {
  let fs: FileSystem;
  try {
    fs = await FileSystem.open(dev, { orphans: "keep" });
  } catch (e) {
    return {
      ok: false,
      problems: [`cannot open: ${(e as Error).message}`],
      notes: [],
      orphans: 0,
      directories: 0,
      files: 0,
      blocksUsed: 0,
    };
  }
  return check(fs);
}

/** Checks an open filesystem (one nothing changes meanwhile: a snapshot's, or one held). */
export function check(fs: FileSystem): Promise<FsckReport> {
  return checkContext(fs.context);
}

async function checkContext(ctx: FsContext): Promise<FsckReport> {
  const problems: string[] = [];
  const notes: string[] = [];
  const say = (p: string) => problems.push(p);
  const { sb, table } = ctx;
  const owner = new Map<number, string>();
  const own = (block: number, who: string) => {
    if (block < sb.dataStart || block >= sb.totalBlocks)
      say(`${who} points to block ${block}, outside the data area`);
    else if (owner.has(block))
      say(`block ${block} is used twice: by ${owner.get(block)} and by ${who}`);
    else owner.set(block, who);
  };
  const read = async (ino: number): Promise<Inode | undefined> => {
    try {
      return await table.get(ino);
    } catch (e) {
      say(`inode ${ino}: ${(e as Error).message}`);
      return undefined;
    }
  };

  for (const [k, sys] of table.systemInodes().entries()) {
    const who = k === 0 ? "the inode table" : "the inode bitmap";
    const { data, indirect } = await blocksOf(ctx, sys);
    for (const [, b] of data) own(b, who);
    for (const b of indirect) own(b, who);
  }

  // Walk the tree: every directory once, counting the names of every inode.
  const names = new Map<number, number>();
  /** Every name of each inode, as (directory, key): what format 2's inodes list. */
  const refs = new Map<number, NameRef[]>();
  const inodes = new Map<number, Inode>();
  const queue: Array<[Inode, number]> = [];
  const root = await read(ROOT);
  if (!root || !isDir(root.mode)) say("inode 1 (the root) is not a directory");
  else queue.push([root, ROOT]);
  const queued = new Set<number>([ROOT]);
  let directories = 0;
  for (let next = 0; next < queue.length; next++) {
    const [dir, parent] = queue[next]!;
    directories++;
    inodes.set(dir.ino, dir);
    if (dir.rdev !== parent)
      say(`directory ${dir.ino}: ".." is ${dir.rdev}, but it is listed in ${parent}`);
    const directory = directoryOf(ctx, dir);
    const dirProblems = await directory.check();
    for (const p of dirProblems) say(p);
    if (dirProblems.length > 0) continue;
    let subdirs = 0;
    for (let cookie = 0n; ; ) {
      const page = await directory.readdir(cookie, 512);
      if (page.length === 0) break;
      cookie = page.at(-1)!.cookie;
      for (const e of page) {
        const where = `entry "${e.name.toString()}" of directory ${dir.ino}`;
        const key = keyOfCookie(e.cookie - 1n);
        const ref = { parent: dir.ino, h: key.h, m: key.m };
        const known = refs.get(e.ino);
        if (known) known.push(ref);
        else refs.set(e.ino, [ref]);
        const inode = await read(e.ino);
        if (!inode) continue;
        if (inode.mode === 0) {
          say(`${where} names free inode ${e.ino}`);
          continue;
        }
        if (e.type !== dirType(inode.mode))
          say(`${where}: type ${e.type}, inode ${e.ino} has ${dirType(inode.mode)}`);
        if (isDir(inode.mode)) {
          subdirs++;
          if (queued.has(e.ino)) say(`${where}: directory ${e.ino} is listed twice`);
          else {
            queued.add(e.ino);
            queue.push([inode, dir.ino]);
          }
        } else {
          names.set(e.ino, (names.get(e.ino) ?? 0) + 1);
          inodes.set(e.ino, inode);
        }
      }
    }
    if (dir.nlink !== 2 + subdirs)
      say(`directory ${dir.ino}: link count ${dir.nlink}, should be ${2 + subdirs}`);
  }

  // The orphan list: inodes still holding blocks that a read-write open frees (no name left) or
  // truncates (blocks past the size, from a truncation cut short).
  const orphans = new Map<number, Inode>();
  const list = table.orphans;
  for (let ino = list.head, prev = 0; ino !== 0; ) {
    const where = `orphan list: inode ${ino}`;
    if (orphans.has(ino) || orphans.size >= list.count) {
      say(`orphan list: longer than its count ${list.count} (or a loop at inode ${ino})`);
      break;
    }
    const inode = ino < table.capacity ? await read(ino) : undefined;
    if (!inode || inode.mode === 0) {
      say(`${where} ${inode ? "is free" : "is beyond the inode table"}`);
      break;
    }
    orphans.set(ino, inode);
    if (!(inode.flags & FLAG_ORPHAN)) say(`${where} is not marked as an orphan`);
    if (inode.orphanPrev !== prev)
      say(`${where} points back to ${inode.orphanPrev}, not to ${prev}`);
    if (inode.nlink === 0) {
      notes.push(
        `inode ${ino} is an orphan (its last name went while it was open, or its freeing was cut short): the next read-write open frees it`,
      );
      if (inodes.has(ino)) say(`${where} has no links but is named in a directory`);
      inodes.set(ino, inode);
    } else {
      notes.push(
        `inode ${ino} is an orphan being truncated to ${inode.size} bytes: the next read-write open finishes it`,
      );
      if (!inodes.has(ino)) say(`${where} has ${inode.nlink} links but no name`);
    }
    prev = ino;
    ino = inode.orphanNext;
  }
  if (problems.length === 0 && orphans.size !== list.count)
    say(`orphan list: counts ${list.count} inodes, holds ${orphans.size}`);

  for (const [ino, inode] of inodes) {
    const who = `inode ${ino}`;
    const badNames = sb.version >= NAMES_SINCE && nameRefProblem(inode, refs.get(ino) ?? []);
    if (badNames) say(`${who} ${badNames}`);
    if (inode.flags & FLAG_ORPHAN && !orphans.has(ino))
      say(`${who} is marked as an orphan but is not on the orphan list`);
    if (!isDir(inode.mode) && inode.nlink !== (names.get(ino) ?? 0)) {
      say(`${who}: link count ${inode.nlink}, but ${names.get(ino) ?? 0} names`);
    }
    if (!(await table.inUse(ino))) say(`${who} is in use but free in the inode bitmap`);
    if (inode.xattrBlock) own(inode.xattrBlock, `${who} (extended attributes)`);
    const owned = inode.xattrBlock ? 1 : 0;
    if (inode.inline) {
      if (!isLink(inode.mode) || inode.size !== inode.inline.length)
        say(`${who}: inline data on a ${inode.mode.toString(8)} of size ${inode.size}`);
      if (inode.blocks !== owned) say(`${who}: counts ${inode.blocks} blocks, owns ${owned}`);
      continue;
    }
    const { data, indirect } = await blocksOf(ctx, inode);
    // An orphan may still own blocks past its size: the rest of a truncation.
    const past = orphans.has(ino) ? undefined : inode.size;
    for (const [f, b] of data) {
      own(b, who);
      if ((isReg(inode.mode) || isLink(inode.mode)) && past !== undefined && f * BS >= past)
        say(`${who}: block for offset ${f * BS} past its size ${inode.size}`);
    }
    for (const b of indirect) own(b, `${who} (indirect)`);
    if (inode.blocks !== data.length + indirect.length + owned) {
      say(`${who}: counts ${inode.blocks} blocks, owns ${data.length + indirect.length + owned}`);
    }
  }

  for (let ino = 1; ino < table.capacity; ino++) {
    if (inodes.has(ino)) continue;
    const used = await table.inUse(ino);
    const inode = await read(ino);
    if (!inode) continue;
    if (inode.mode !== 0) {
      say(
        inode.nlink === 0
          ? `inode ${ino} was unlinked while open and never freed`
          : `inode ${ino} is not reachable from the root (lost)`,
      );
    } else if (used) say(`inode ${ino} is marked in use but holds nothing`);
  }

  // Set bits are visited a byte at a time (skipping empty bytes), owned blocks one by one.
  let marked = 0;
  const bitmap: Buffer[] = [];
  for (let i = 0; i < sb.bitmap.blocks; i++) {
    const img = await ctx.meta.read(sb.bitmap.start + i);
    bitmap.push(img);
    for (let byte = 0; byte < BS; byte++) {
      const v = img[byte]!;
      if (v === 0) continue;
      for (let k = 0; k < 8; k++) {
        const block = (i * BS + byte) * 8 + k;
        if (!(v & (1 << k)) || block < sb.dataStart || block >= sb.totalBlocks) continue;
        marked++;
        if (!owner.has(block)) say(`block ${block} is marked in use but nothing owns it (leaked)`);
      }
    }
  }
  for (const [block, who] of owner) {
    const img = bitmap[Math.floor(block / (BS * 8))]!;
    const bit = block % (BS * 8);
    if (!(img[bit >> 3]! & (1 << (bit & 7))))
      say(`block ${block} is used by ${who} but marked free`);
  }
  if (problems.length === 0 && marked !== owner.size)
    say(`bitmap marks ${marked} blocks, ${owner.size} are owned`);
  return {
    ok: problems.length === 0,
    problems,
    notes,
    orphans: orphans.size,
    directories,
    files: [...inodes.values()].filter((i) => !isDir(i.mode)).length,
    blocksUsed: owner.size,
  };
}
