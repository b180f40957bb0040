// File contents: reads and writes of byte ranges through the block map, holes as zeros, and
// truncation. Data blocks go straight to the device, before the transaction that points to them.

import type { BlockDevice } from "../cow/index.js";
import { FsError } from "../errors.js";
import type { Allocator } from "./allocator.js";
import { ensureBlock, MAX_FILE_BLOCKS, mapBlock, mapRange, truncateBlocks } from "./block-map.js";
import type { Inode } from "./inode.js";
import type { MetaStore } from "./meta-store.js";

const BS = 4096;
export const MAX_FILE_SIZE = MAX_FILE_BLOCKS * BS;

export class FileData {
  constructor(
    private readonly dev: BlockDevice,
    private readonly meta: MetaStore,
    private readonly alloc: Allocator,
  ) {}

  /** Reads up to `length` bytes at `offset`, stopping at the end of the file. */
  async read(ino: Inode, offset: number, length: number): Promise<Buffer> {
    const end = Math.min(ino.size, offset + length);
    if (end <= offset) return Buffer.alloc(0);
    const out = Buffer.alloc(end - offset);
    const runs: Array<{ dev: number; at: number; len: number }> = [];
    const first = Math.floor(offset / BS);
    const map = await mapRange(this.meta, ino, first, Math.ceil(end / BS) - first);
    for (let f = first; f * BS < end; f++) {
      const block = map[f - first]!;
      if (block === 0) continue; // a hole: zeros already
      const lo = Math.max(offset, f * BS);
      const hi = Math.min(end, (f + 1) * BS);
      const devAt = block * BS + (lo - f * BS);
      const last = runs.at(-1);
      if (last && last.dev + last.len === devAt && last.at + last.len === lo - offset)
        last.len += hi - lo;
      else runs.push({ dev: devAt, at: lo - offset, len: hi - lo });
    }
    await Promise.all(runs.map((r) => this.dev.read(r.dev, out.subarray(r.at, r.at + r.len))));
    return out;
  }

  /**
   * Writes `data` at `offset`, allocating blocks for holes, inside a metadata operation; grows
   * the size. The caller sets the times and writes the inode back.
   */
  async write(ino: Inode, offset: number, data: Uint8Array): Promise<void> {
    const end = offset + data.length;
    if (end > MAX_FILE_SIZE)
      throw new FsError("EFBIG", `a file cannot reach ${end} bytes (largest: ${MAX_FILE_SIZE})`);
    if (data.length === 0) return;
    let goal: number | undefined;
    const runs: Array<{ dev: number; parts: Uint8Array[] }> = [];
    for (let f = Math.floor(offset / BS); f * BS < end; f++) {
      const { block, fresh } = await ensureBlock(this.meta, this.alloc, ino, f, goal);
      goal = block + 1;
      const lo = Math.max(offset, f * BS);
      const hi = Math.min(end, (f + 1) * BS);
      let bytes = data.subarray(lo - offset, hi - offset);
      if (hi - lo < BS) {
        // A partial block: merge with what is there (zeros for a new block).
        const whole = Buffer.alloc(BS);
        if (!fresh) await this.dev.read(block * BS, whole);
        whole.set(bytes, lo - f * BS);
        bytes = whole;
      }
      const last = runs.at(-1);
      if (last && last.dev + last.parts.length * BS === block * BS) last.parts.push(bytes);
      else runs.push({ dev: block * BS, parts: [bytes] });
    }
    for (const r of runs)
      await this.dev.write(r.dev, r.parts.length === 1 ? r.parts[0]! : Buffer.concat(r.parts));
    ino.size = Math.max(ino.size, end);
  }

  /** Sets the size, freeing blocks past it and zeroing the rest of the last block, inside an operation. */
  async truncate(ino: Inode, size: number): Promise<void> {
    const shrinks = size < ino.size;
    await this.resize(ino, size);
    if (shrinks) await this.free(ino, Math.ceil(size / BS));
  }

  /**
   * Sets the size; a shrink zeroes the rest of the new last block (in place, as file data) but
   * frees nothing: the blocks past the size are left to `free`, maybe over several operations.
   */
  async resize(ino: Inode, size: number): Promise<void> {
    if (size > MAX_FILE_SIZE)
      throw new FsError("EFBIG", `a file cannot reach ${size} bytes (largest: ${MAX_FILE_SIZE})`);
    const tail = size % BS;
    if (size < ino.size && tail !== 0) {
      const block = await mapBlock(this.meta, ino, Math.floor(size / BS));
      if (block !== 0) await this.dev.write(block * BS + tail, Buffer.alloc(BS - tail));
    }
    ino.size = size;
  }

  /**
   * Frees the file's blocks from file block `from` on, highest first, inside an operation;
   * stops early (returning false) when `mayFree` says no (see `truncateBlocks`).
   */
  free(ino: Inode, from: number, mayFree?: () => boolean): Promise<boolean> {
    return truncateBlocks(this.meta, this.alloc, ino, from, mayFree);
  }
}
