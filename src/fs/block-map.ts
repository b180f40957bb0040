// A file's block map: 12 direct pointers, then single, double and triple indirect blocks of 1024
// 32-bit pointers; 0 is a hole, so sparse files cost nothing. It changes the inode in memory only.

import { FsError } from "../errors.js";
import type { Allocator } from "./allocator.js";
import { DIRECT, type Inode } from "./inode.js";
import type { MetaStore } from "./meta-store.js";

export const PTRS = 1024;
/** Spans of file blocks under the single, double and triple indirect pointers. */
const SPANS = [PTRS, PTRS ** 2, PTRS ** 3] as const;
export const MAX_FILE_BLOCKS = DIRECT + SPANS[0] + SPANS[1] + SPANS[2];

/** Where file block `f` hangs: the inode pointer slot, its depth, and f's offset under it. */
function locate(f: number): { slot: number; depth: number; rel: number } {
  if (!Number.isSafeInteger(f) || f < 0 || f >= MAX_FILE_BLOCKS) {
    throw new FsError(
      "EFBIG",
      `file block ${f} is beyond the largest file (${MAX_FILE_BLOCKS} blocks)`,
    );
  }
  if (f < DIRECT) return { slot: f, depth: 0, rel: 0 };
  let rel = f - DIRECT;
  for (let d = 0; d < 3; d++) {
    if (rel < SPANS[d]!) return { slot: DIRECT + d, depth: d + 1, rel };
    rel -= SPANS[d]!;
  }
  throw new Error("unreachable");
}

/** The device block holding file block `f`, or 0 for a hole. */
export async function mapBlock(meta: MetaStore, ino: Inode, f: number): Promise<number> {
  const { slot, depth, rel } = locate(f);
  let block = ino.ptrs[slot]!;
  for (let d = depth; d > 0 && block !== 0; d--) {
    const img = await meta.read(block);
    block = img.readUInt32LE(4 * (Math.floor(rel / PTRS ** (d - 1)) % PTRS));
  }
  return block;
}

/** The device blocks of file blocks [first, first + count), 0 for holes: one read per indirect block. */
export async function mapRange(
  meta: MetaStore,
  ino: Inode,
  first: number,
  count: number,
): Promise<number[]> {
  const out = new Array<number>(count).fill(0);
  for (let i = 0; i < count; ) {
    const { slot, depth, rel } = locate(first + i);
    if (depth === 0) {
      out[i++] = ino.ptrs[slot]!;
      continue;
    }
    let block = ino.ptrs[slot]!;
    for (let d = depth; d > 1 && block !== 0; d--) {
      block = (await meta.read(block)).readUInt32LE(4 * (Math.floor(rel / PTRS ** (d - 1)) % PTRS));
    }
    const at = rel % PTRS;
    const n = Math.min(count - i, PTRS - at);
    if (block !== 0) {
      const img = await meta.read(block);
      for (let k = 0; k < n; k++) out[i + k] = img.readUInt32LE(4 * (at + k));
    }
    i += n;
  }
  return out;
}

/**
 * The device block of file block `f`, allocating it (and any indirect block on the way) when it
 * is a hole. Inside a metadata operation; the caller writes the inode back. A fresh data block
 * holds garbage until the caller writes it.
 */
export async function ensureBlock(
  meta: MetaStore,
  alloc: Allocator,
  ino: Inode,
  f: number,
  goal?: number,
): Promise<{ block: number; fresh: boolean }> {
  const { slot, depth, rel } = locate(f);
  const take = async (): Promise<number> => {
    const [b] = await alloc.allocate(1, goal);
    ino.blocks++;
    return b!;
  };
  let fresh = false;
  if (ino.ptrs[slot] === 0) {
    ino.ptrs[slot] = await take();
    if (depth > 0) meta.create(ino.ptrs[slot]!);
    else fresh = true;
  }
  let block = ino.ptrs[slot]!;
  for (let d = depth; d > 0; d--) {
    const at = 4 * (Math.floor(rel / PTRS ** (d - 1)) % PTRS);
    const next = (await meta.read(block)).readUInt32LE(at);
    if (next !== 0) {
      block = next;
      continue;
    }
    const made = await take();
    (await meta.write(block)).writeUInt32LE(made, at);
    if (d > 1) meta.create(made);
    else fresh = true;
    block = made;
  }
  return { block, fresh };
}

/**
 * Frees every block of file blocks `from` and after, and the indirect blocks left empty. Inside a
 * metadata operation; the caller sets the size and writes the inode back.
 */
export async function truncateBlocks(
  meta: MetaStore,
  alloc: Allocator,
  ino: Inode,
  from: number,
): Promise<void> {
  const freed: number[] = [];
  for (let i = Math.max(0, from); i < DIRECT; i++) {
    if (ino.ptrs[i]) freed.push(ino.ptrs[i]!);
    ino.ptrs[i] = 0;
  }
  let base = DIRECT;
  for (let d = 0; d < 3; d++) {
    const root = ino.ptrs[DIRECT + d]!;
    if (root !== 0 && from < base + SPANS[d]!) {
      if (await cut(meta, root, d + 1, base, Math.max(from, base), freed)) ino.ptrs[DIRECT + d] = 0;
    }
    base += SPANS[d]!;
  }
  ino.blocks -= freed.length;
  await alloc.release(freed);
}

/**
 * Cuts file blocks from `from` under indirect `block` (depth `depth`, first file block `base`).
 * Returns true when the whole subtree went (the block itself is then freed too).
 */
async function cut(
  meta: MetaStore,
  block: number,
  depth: number,
  base: number,
  from: number,
  freed: number[],
): Promise<boolean> {
  const span = PTRS ** (depth - 1);
  const first = Math.floor((from - base) / span);
  const img = await meta.read(block);
  let kept = false;
  for (let i = 0; i < first; i++) if (img.readUInt32LE(4 * i) !== 0) kept = true;
  const gone: number[] = [];
  for (let i = first; i < PTRS; i++) {
    const child = img.readUInt32LE(4 * i);
    if (child === 0) continue;
    const whole =
      depth === 1 ||
      (await cut(meta, child, depth - 1, base + i * span, Math.max(from, base + i * span), freed));
    if (whole) {
      if (depth === 1) freed.push(child);
      gone.push(i);
    } else kept = true;
  }
  if (!kept) {
    freed.push(block);
    return true;
  }
  if (gone.length > 0) {
    const w = await meta.write(block);
    for (const i of gone) w.writeUInt32LE(0, 4 * i);
  }
  return false;
}

/** Every block a map uses: data blocks (with their file block numbers) and indirect blocks. */
export async function blocksOf(
  meta: MetaStore,
  ino: Inode,
): Promise<{ data: Array<[file: number, block: number]>; indirect: number[] }> {
  const data: Array<[number, number]> = [];
  const indirect: number[] = [];
  for (let i = 0; i < DIRECT; i++) if (ino.ptrs[i]) data.push([i, ino.ptrs[i]!]);
  const walk = async (block: number, depth: number, base: number): Promise<void> => {
    indirect.push(block);
    const img = await meta.read(block);
    const span = PTRS ** (depth - 1);
    for (let i = 0; i < PTRS; i++) {
      const child = img.readUInt32LE(4 * i);
      if (child === 0) continue;
      if (depth === 1) data.push([base + i, child]);
      else await walk(child, depth - 1, base + i * span);
    }
  };
  let base = DIRECT;
  for (let d = 0; d < 3; d++) {
    const root = ino.ptrs[DIRECT + d]!;
    if (root !== 0) await walk(root, d + 1, base);
    base += SPANS[d]!;
  }
  return { data, indirect };
}
