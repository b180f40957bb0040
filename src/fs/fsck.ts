// The filesystem checker: walks the tree from the root and cross-checks directories, inodes,
// link counts, block ownership and both bitmaps. It reads only; it never repairs.

import type { BlockDevice } from "../cow/index.js";
import { dirType, isDir, isLink, isReg } from "./attr.js";
import { blocksOf } from "./block-map.js";
import { FileSystem, ROOT } from "./filesystem.js";
import type { Inode } from "./inode.js";

const BS = 4096;

export interface FsckReport {
  ok: boolean;
  problems: string[];
  directories: number;
  files: number;
  blocksUsed: number;
}

/** Opens the filesystem on `dev` (read-only devices too) and checks all of it. */
export async function fsck(dev: BlockDevice): Promise<FsckReport> {
  let fs: FileSystem;
  try {
    fs = await FileSystem.open(dev);
  } catch (e) {
    return {
      ok: false,
      problems: [`cannot open: ${(e as Error).message}`],
      directories: 0,
      files: 0,
      blocksUsed: 0,
    };
  }
  return check(fs);
}

export async function check(fs: FileSystem): Promise<FsckReport> {
  const problems: string[] = [];
  const say = (p: string) => problems.push(p);
  const { sb, table, meta } = fs;
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
    const { data, indirect } = await blocksOf(meta, sys);
    for (const [, b] of data) own(b, who);
    for (const b of indirect) own(b, who);
  }

  // Walk the tree: every directory once, counting the names of every inode.
  const names = new Map<number, number>();
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
    const directory = fs.dir(dir);
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

  for (const [ino, inode] of inodes) {
    const who = `inode ${ino}`;
    if (!isDir(inode.mode) && inode.nlink !== names.get(ino)) {
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
    const { data, indirect } = await blocksOf(meta, inode);
    for (const [f, b] of data) {
      own(b, who);
      if ((isReg(inode.mode) || isLink(inode.mode)) && f * BS >= inode.size)
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

  let marked = 0;
  for (let i = 0; i < sb.bitmap.blocks; i++) {
    const img = await meta.read(sb.bitmap.start + i);
    for (let bit = 0; bit < BS * 8; bit++) {
      const block = i * BS * 8 + bit;
      if (block < sb.dataStart || block >= sb.totalBlocks) continue;
      const set = (img[bit >> 3]! & (1 << (bit & 7))) !== 0;
      if (set) marked++;
      if (set && !owner.has(block))
        say(`block ${block} is marked in use but nothing owns it (leaked)`);
      if (!set && owner.has(block))
        say(`block ${block} is used by ${owner.get(block)} but marked free`);
    }
  }
  if (problems.length === 0 && marked !== owner.size)
    say(`bitmap marks ${marked} blocks, ${owner.size} are owned`);
  return {
    ok: problems.length === 0,
    problems,
    directories,
    files: [...inodes.values()].filter((i) => !isDir(i.mode)).length,
    blocksUsed: owner.size,
  };
}
