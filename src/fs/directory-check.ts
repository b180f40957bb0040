// fsck of one directory: walks every block of its tree and free list and says what is wrong.
// It reads only, never changes a block, and throws nothing for damage it can describe.

import {
  cmp,
  E_NAME,
  E_NAME_LEN,
  entryIno,
  entryKey,
  entryName,
  entryType,
  FREE,
  HEADER_BLOCK,
  headerProblem,
  INNER,
  type Key,
  kindProblem,
  LEAF,
  leafEnd,
  N_BODY,
  nameProblem,
  nextFree,
  nodeCount,
  nodeProblem,
  readHeader,
  readInner,
  show,
  TYPE_MAX,
} from "./directory-format.js";

/** What the check reads of a directory's blocks (`DirectoryBlocks` has it): it never writes. */
export interface ReadableBlocks {
  readonly count: number;
  read(i: number): Promise<Buffer>;
}

/**
 * What is wrong with the directory in `blocks` (empty when clean), each problem naming `label`
 * and a block: checksums, kinds, levels, key order and ranges, each name's hash (by `hashOf`,
 * under the directory's key) and validity, counts, the free list, and that every block is used
 * exactly once. Every image is verified afresh, whatever a cache believes.
 */
export async function checkDirectory(
  blocks: ReadableBlocks,
  label: string,
  hashOf: (key: Buffer, name: Uint8Array) => number,
): Promise<string[]> {
  const problems: string[] = [];
  const say = (block: number, what: string) => problems.push(`${label} block ${block}: ${what}`);
  const hb = blocks.count > 0 ? await blocks.read(HEADER_BLOCK) : undefined;
  const hp = hb ? headerProblem(hb, blocks.count, false) : "no blocks: not formatted";
  if (hp || !hb) return [`${label} block ${HEADER_BLOCK}: ${hp}`];
  const hdr = readHeader(hb);
  const seen = new Set<number>([HEADER_BLOCK]);
  let entries = 0;
  let group = { h: -1, names: new Set<string>() };
  const walk = async (block: number, level: number, lo?: Key, hi?: Key): Promise<void> => {
    if (!(block >= 1 && block < blocks.count)) return void say(block, "beyond the directory");
    if (seen.has(block)) return void say(block, "referenced twice");
    seen.add(block);
    const b = await blocks.read(block);
    const p = nodeProblem(b, block, false) ?? kindProblem(b, level > 0 ? INNER : LEAF, level);
    if (p) return void say(block, p);
    const inRange = (k: Key) => (!lo || cmp(k, lo) >= 0) && (!hi || cmp(k, hi) < 0);
    if (level > 0) {
      const { keys, children } = readInner(b);
      keys.forEach((k, i) => {
        if (!inRange(k)) say(block, `key ${i} outside the node's range`);
        if (i > 0 && cmp(keys[i - 1]!, k) >= 0) say(block, `key ${i} out of order`);
      });
      for (let i = 0; i < children.length; i++) {
        await walk(children[i]!, level - 1, i > 0 ? keys[i - 1] : lo, keys[i] ?? hi);
      }
      return;
    }
    const end = leafEnd(b);
    let n = 0;
    let prev: Key | undefined;
    for (let off = N_BODY, size = 0; off < end; off += size, n++) {
      // Not entrySize: a damaged leaf may end in the middle of an entry's fixed part.
      size = E_NAME + (b[off + E_NAME_LEN] ?? 0);
      if (off + size > end) return void say(block, `entry ${n} overruns the leaf`);
      const k = entryKey(b, off);
      const name = entryName(b, off);
      const what = `entry ${show(name)}`;
      if (prev && cmp(prev, k) >= 0) say(block, `${what} out of key order`);
      if (!inRange(k)) say(block, `${what} outside the leaf's key range`);
      const bad = nameProblem(name);
      if (bad) say(block, `${what}: ${bad}`);
      else if (hashOf(hdr.key, name) !== k.h) say(block, `${what} filed under another hash`);
      if (group.h !== k.h) group = { h: k.h, names: new Set() };
      if (group.names.has(name.toString("latin1"))) say(block, `${what} stored twice`);
      group.names.add(name.toString("latin1"));
      const ino = entryIno(b, off);
      if (!Number.isSafeInteger(ino) || ino < 1) say(block, `${what}: inode ${ino}`);
      if (entryType(b, off) > TYPE_MAX) say(block, `${what}: file type ${entryType(b, off)}`);
      prev = k;
    }
    if (n !== nodeCount(b)) say(block, `holds ${n} entries, its count says ${nodeCount(b)}`);
    if (n === 0 && block !== hdr.root) say(block, "empty leaf left in the tree");
    entries += n;
  };
  await walk(hdr.root, hdr.depth);
  if (entries !== hdr.count)
    say(HEADER_BLOCK, `counts ${hdr.count} entries, the tree holds ${entries}`);
  let free = 0;
  for (let i = hdr.freeHead; i !== 0; free++) {
    if (i >= blocks.count || seen.has(i)) {
      say(i, i >= blocks.count ? "free list leads beyond the directory" : "free but in use");
      break;
    }
    seen.add(i);
    const b = await blocks.read(i);
    const p = nodeProblem(b, i, false) ?? kindProblem(b, FREE, 0);
    if (p) {
      say(i, `free list: ${p}`);
      break;
    }
    i = nextFree(b);
  }
  if (free !== hdr.freeCount)
    say(HEADER_BLOCK, `counts ${hdr.freeCount} free blocks, the list has ${free}`);
  for (let i = 1; i < blocks.count; i++) if (!seen.has(i)) say(i, "neither in the tree nor free");
  return problems;
}
