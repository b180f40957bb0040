// A file's block map: 12 direct pointers, then single, double and triple indirect blocks of 1024
// 32-bit pointers; 0 is a hole, so sparse files cost nothing. It changes the inode in memory only.
// Each function takes the part of the filesystem's context it needs (metadata, allocator): those
// that change anything run inside the caller's `meta.run`; the `…Now` ones never wait.

import { FsError } from "../errors.js";
import type { Allocator } from "./allocator.js";
import { DIRECT, type Inode } from "./inode.js";
import type { MetaStore } from "./meta-store.js";

/** What the block-map functions need of the filesystem: its metadata blocks. */
export interface MapContext {
  readonly meta: MetaStore;
}

/** What those that allocate need: the metadata blocks and the allocator. */
export interface AllocContext extends MapContext {
  readonly alloc: Allocator;
}

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
export async function mapBlock(ctx: MapContext, ino: Inode, f: number): Promise<number> {
  const { meta } = ctx;
  const { slot, depth, rel } = locate(f);
  let block = ino.ptrs[slot]!;
  for (let d = depth; d > 0 && block !== 0; d--) {
    const img = await meta.read(block);
    block = img.readUInt32LE(4 * (Math.floor(rel / PTRS ** (d - 1)) % PTRS));
  }
  return block;
}

/** `mapBlock` if every indirect block on the way is in memory, else undefined. It never waits. */
export function mapBlockNow(ctx: MapContext, ino: Inode, f: number): number | undefined {
  const { meta } = ctx;
  const { slot, depth, rel } = locate(f);
  let block = ino.ptrs[slot]!;
  for (let d = depth; d > 0 && block !== 0; d--) {
    const img = meta.peek(block);
    if (!img) return undefined;
    block = img.readUInt32LE(4 * (Math.floor(rel / PTRS ** (d - 1)) % PTRS));
  }
  return block;
}

/** The device blocks of file blocks [first, first + count), 0 for holes: one read per indirect block. */
export async function mapRange(
  ctx: MapContext,
  ino: Inode,
  first: number,
  count: number,
): Promise<number[]> {
  const { meta } = ctx;
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
 * The device blocks of file blocks [first, first + count) if every indirect block on the way is
 * in memory (see `MetaStore.peek`), else undefined; 0 for holes. It never waits.
 */
export function mapRangeNow(
  ctx: MapContext,
  ino: Inode,
  first: number,
  count: number,
): number[] | undefined {
  const { meta } = ctx;
  const out = new Array<number>(count).fill(0);
  for (let i = 0; i < count; ) {
    const { slot, depth, rel } = locate(first + i);
    if (depth === 0) {
      out[i++] = ino.ptrs[slot]!;
      continue;
    }
    let block = ino.ptrs[slot]!;
    for (let d = depth; d > 1 && block !== 0; d--) {
      const img = meta.peek(block);
      if (!img) return undefined;
      block = img.readUInt32LE(4 * (Math.floor(rel / PTRS ** (d - 1)) % PTRS));
    }
    const at = rel % PTRS;
    const n = Math.min(count - i, PTRS - at);
    if (block !== 0) {
      const img = meta.peek(block);
      if (!img) return undefined;
      for (let k = 0; k < n; k++) out[i + k] = img.readUInt32LE(4 * (at + k));
    }
    i += n;
  }
  return out;
}

/**
 * The device blocks of file blocks [first, first + count), allocating every hole: the data
 * blocks first, in one request to the allocator (so as few runs as it finds, from `goal`, by
 * default just after the block before `first`), then the indirect blocks they need. Inside a
 * metadata operation; the caller writes the inode back. `fresh[i]` is true for a data block just
 * allocated: it holds garbage until the caller writes it.
 */
export async function ensureRange(
  ctx: AllocContext,
  ino: Inode,
  first: number,
  count: number,
  goal?: number,
): Promise<{ blocks: number[]; fresh: boolean[] }> {
  const { meta, alloc } = ctx;
  if (count === 0) return { blocks: [], fresh: [] };
  locate(first + count - 1); // EFBIG before anything changes
  const blocks = await mapRange(ctx, ino, first, count);
  const fresh = new Array<boolean>(count).fill(false);
  const holes = blocks.reduce((n, b) => n + (b === 0 ? 1 : 0), 0);
  if (holes === 0) return { blocks, fresh };
  if (goal === undefined && first > 0) {
    const before = await mapBlock(ctx, ino, first - 1);
    if (before !== 0) goal = before + 1;
  }
  const got = await alloc.allocate(holes, goal);
  ino.blocks += holes;
  let next = 0;
  /** Indirect blocks go right after the data just allocated. */
  const take = async (): Promise<number> => {
    const [b] = await alloc.allocate(1, got.at(-1)! + 1);
    ino.blocks++;
    meta.create(b!);
    return b!;
  };
  for (let i = 0; i < count; ) {
    const { slot, depth, rel } = locate(first + i);
    if (depth === 0) {
      if (blocks[i] === 0) {
        blocks[i] = ino.ptrs[slot] = got[next++]!;
        fresh[i] = true;
      }
      i++;
      continue;
    }
    const at = rel % PTRS;
    const n = Math.min(count - i, PTRS - at);
    if (blocks.slice(i, i + n).includes(0)) {
      // The indirect block that holds these data pointers, made on the way if missing.
      if (ino.ptrs[slot] === 0) ino.ptrs[slot] = await take();
      let leaf = ino.ptrs[slot]!;
      for (let d = depth; d > 1; d--) {
        const off = 4 * (Math.floor(rel / PTRS ** (d - 1)) % PTRS);
        let below = (await meta.read(leaf)).readUInt32LE(off);
        if (below === 0) {
          below = await take();
          (await meta.write(leaf)).writeUInt32LE(below, off);
        }
        leaf = below;
      }
      const img = await meta.write(leaf);
      for (let k = i; k < i + n; k++) {
        if (blocks[k] !== 0) continue;
        blocks[k] = got[next++]!;
        fresh[k] = true;
        img.writeUInt32LE(blocks[k]!, 4 * (at + k - i));
      }
    }
    i += n;
  }
  return { blocks, fresh };
}

/**
 * The device block of file block `f`, allocating it (and any indirect block on the way) when it
 * is a hole. Inside a metadata operation; the caller writes the inode back. A fresh data block
 * holds garbage until the caller writes it.
 */
export async function ensureBlock(
  ctx: AllocContext,
  ino: Inode,
  f: number,
  goal?: number,
): Promise<{ block: number; fresh: boolean }> {
  const { blocks, fresh } = await ensureRange(ctx, ino, f, 1, goal);
  return { block: blocks[0]!, fresh: fresh[0]! };
}

/** First file block under the single, double and triple indirect pointers. */
const BASES = [DIRECT, DIRECT + SPANS[0], DIRECT + SPANS[0] + SPANS[1]] as const;

/**
 * Frees every block of file blocks `from` and after, and the indirect blocks left empty, the
 * highest file blocks first. Inside a metadata operation; the caller writes the inode back.
 *
 * `mayFree` is asked before each block is freed: when it says no, the cut stops there and
 * returns false, leaving a consistent map (every pointer it cleared is written, `ino.blocks`
 * counts what is left, an indirect block it emptied may remain, all zeros, to be freed by the
 * next call). Returns true when nothing is left at or past `from`.
 */
export async function truncateBlocks(
  ctx: AllocContext,
  ino: Inode,
  from: number,
  mayFree: () => boolean = () => true,
): Promise<boolean> {
  const { meta, alloc } = ctx;
  from = Math.max(0, from);
  const release = async (block: number): Promise<boolean> => {
    if (!mayFree()) return false;
    await alloc.release([block]);
    ino.blocks--;
    return true;
  };
  /** Cuts under indirect `block` (depth `depth`, first file block `base`): "empty" when the
   *  whole subtree went (the block itself is then the caller's to free). */
  const cut = async (
    block: number,
    depth: number,
    base: number,
  ): Promise<"empty" | "kept" | "stopped"> => {
    const span = PTRS ** (depth - 1);
    const first = Math.max(0, Math.floor((from - base) / span));
    let img = await meta.read(block);
    let kept = false;
    for (let i = PTRS - 1; i >= first; i--) {
      const child = img.readUInt32LE(4 * i);
      if (child === 0) continue;
      if (depth > 1) {
        const r = await cut(child, depth - 1, base + i * span);
        if (r === "stopped") return r;
        if (r === "kept") {
          kept = true;
          continue;
        }
      }
      if (!(await release(child))) return "stopped";
      img = await meta.write(block);
      img.writeUInt32LE(0, 4 * i);
    }
    for (let i = 0; i < first && !kept; i++) if (img.readUInt32LE(4 * i) !== 0) kept = true;
    return kept ? "kept" : "empty";
  };
  for (let d = 2; d >= 0; d--) {
    const root = ino.ptrs[DIRECT + d]!;
    if (root === 0 || from >= BASES[d]! + SPANS[d]!) continue;
    const r = await cut(root, d + 1, BASES[d]!);
    if (r === "stopped") return false;
    if (r === "empty") {
      if (!(await release(root))) return false;
      ino.ptrs[DIRECT + d] = 0;
    }
  }
  for (let i = DIRECT - 1; i >= from; i--) {
    const block = ino.ptrs[i]!;
    if (block === 0) continue;
    if (!(await release(block))) return false;
    ino.ptrs[i] = 0;
  }
  return true;
}

/** Every block a map uses: data blocks (with their file block numbers) and indirect blocks. */
export async function blocksOf(
  ctx: MapContext,
  ino: Inode,
): Promise<{ data: Array<[file: number, block: number]>; indirect: number[] }> {
  const { meta } = ctx;
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
