// Block allocation: the on-disk bitmap (one bit per block, 1 = in use), changed only inside
// metadata operations, and in-memory free counts per bitmap block. It never hands out a block twice.

import type { BlockDevice } from "../cow/index.js";
import { CorruptStoreError, enospc } from "../errors.js";
import { CheckpointNeeded, type MetaStore } from "./meta-store.js";
import type { Superblock } from "./superblock.js";

const BITS = 4096 * 8;

/**
 * Every field is guarded by the metadata lock: changed by `allocate` and `release` inside
 * `MetaStore.run`, and by the store's commit, checkpoint and rollback listeners, which run under
 * it.
 */
export class Allocator {
  /** Free blocks counted in each bitmap block. Guarded by the metadata lock. */
  private readonly freeIn: Int32Array;
  /** Guarded by the metadata lock; `freeBlocks` reads it anywhere (a count, never half-made). */
  private total = 0;
  /**
   * Where the next search starts when the caller gives no goal (next fit). Guarded by the metadata
   * lock.
   */
  private cursor: number;
  /**
   * Blocks freed since the last commit. They are not handed out again before it: if the power
   * failed first, the file that freed them would still own them, with another file's data.
   * Guarded by the metadata lock.
   */
  private readonly quarantine = new Set<number>();
  /**
   * Freed blocks, committed, whose old metadata images are still in the journal's log. They are
   * not handed out before the next checkpoint: a replay would write those images over whatever
   * the block held by then, and file data is written in place, outside the journal.
   * Guarded by the metadata lock.
   */
  private readonly deferred = new Set<number>();

  private constructor(
    private readonly meta: MetaStore,
    private readonly sb: Superblock,
  ) {
    this.freeIn = new Int32Array(sb.bitmap.blocks);
    this.cursor = sb.dataStart;
  }

  /** Writes the initial bitmap (mkfs): the superblock, journal and bitmap themselves are in use. */
  static async format(dev: BlockDevice, sb: Superblock): Promise<void> {
    for (let i = 0; i < sb.bitmap.blocks; i++) {
      const b = Buffer.alloc(dev.blockSize);
      for (let bit = 0; bit < BITS; bit++) {
        const block = i * BITS + bit;
        if (block < sb.dataStart || block >= sb.totalBlocks) b[bit >> 3]! |= 1 << (bit & 7);
      }
      await dev.write((sb.bitmap.start + i) * dev.blockSize, b);
    }
  }

  static async load(meta: MetaStore, sb: Superblock): Promise<Allocator> {
    const a = new Allocator(meta, sb);
    for (let i = 0; i < sb.bitmap.blocks; i++) a.count(i, await meta.read(sb.bitmap.start + i));
    meta.onCommit(() => {
      for (const q of a.quarantine) if (meta.logged(q)) a.deferred.add(q);
      a.quarantine.clear();
    });
    meta.onCheckpoint(() => a.deferred.clear());
    meta.onRollback((blocks) => {
      for (const b of blocks) {
        const i = b - sb.bitmap.start;
        if (i >= 0 && i < sb.bitmap.blocks) a.count(i, meta.peek(b)!);
      }
      for (const q of a.quarantine) if (a.markedSync(q)) a.quarantine.delete(q); // freed by the undone operation
    });
    return a;
  }

  get freeBlocks(): number {
    return this.total;
  }

  private count(i: number, img: Buffer): void {
    let free = 0;
    for (const byte of img) free += 8 - popcount(byte);
    this.total += free - this.freeIn[i]!;
    this.freeIn[i] = free;
  }

  /** True when `block` is marked in use in a bitmap block that is in memory. */
  private markedSync(block: number): boolean {
    const img = this.meta.peek(this.sb.bitmap.start + Math.floor(block / BITS));
    const bit = block % BITS;
    return img !== undefined && (img[bit >> 3]! & (1 << (bit & 7))) !== 0;
  }

  /** True when `block` is marked in use. */
  async inUse(block: number): Promise<boolean> {
    const img = await this.meta.read(this.sb.bitmap.start + Math.floor(block / BITS));
    const bit = block % BITS;
    return (img[bit >> 3]! & (1 << (bit & 7))) !== 0;
  }

  /**
   * Takes `count` free blocks, as few runs as it finds, searching from `goal` (else from where
   * the last search ended). Inside a metadata operation. ENOSPC, changing nothing, if there are fewer.
   */
  async allocate(count: number, goal?: number): Promise<number[]> {
    const usable = this.total - this.quarantine.size - this.deferred.size;
    if (count > usable) {
      const why = `${count} blocks wanted, ${usable} free (${this.quarantine.size} more once committed, ${this.deferred.size} after a checkpoint)`;
      // A commit frees the quarantined blocks (or defers them), and the checkpoint after it the
      // deferred ones: MetaStore.run does both and runs the operation again.
      if (count <= usable + this.quarantine.size + this.deferred.size)
        throw new CheckpointNeeded(why);
      throw enospc(why);
    }
    const out: number[] = [];
    const start =
      goal !== undefined && goal >= this.sb.dataStart && goal < this.sb.totalBlocks
        ? goal
        : this.cursor;
    const n = this.sb.bitmap.blocks;
    const first = Math.floor(start / BITS);
    for (let k = 0; k <= n && out.length < count; k++) {
      const i = (first + k) % n;
      if (this.freeIn[i] === 0) continue;
      const img = await this.meta.write(this.sb.bitmap.start + i);
      let bit = k === 0 ? start % BITS : 0;
      for (; bit < BITS && out.length < count; bit++) {
        if (img[bit >> 3] === 0xff && (bit & 7) === 0) {
          bit += 7;
          continue;
        }
        if ((img[bit >> 3]! & (1 << (bit & 7))) !== 0) continue;
        if (this.quarantine.has(i * BITS + bit) || this.deferred.has(i * BITS + bit)) continue;
        img[bit >> 3]! |= 1 << (bit & 7);
        out.push(i * BITS + bit);
        this.freeIn[i]!--;
        this.total--;
      }
    }
    if (out.length < count)
      throw new CorruptStoreError(
        "bitmap",
        `free counts say ${this.total + out.length} free, found ${out.length}`,
      );
    this.cursor = out.at(-1)! + 1;
    return out;
  }

  /** Returns blocks to the free pool. Inside a metadata operation. */
  async release(blocks: readonly number[]): Promise<void> {
    for (const block of blocks) {
      if (block < this.sb.dataStart || block >= this.sb.totalBlocks) {
        throw new CorruptStoreError(
          "bitmap",
          `block ${block} cannot be freed: it is not a data block`,
        );
      }
      const i = Math.floor(block / BITS);
      const bit = block % BITS;
      const img = await this.meta.write(this.sb.bitmap.start + i);
      if ((img[bit >> 3]! & (1 << (bit & 7))) === 0) {
        throw new CorruptStoreError("bitmap", `block ${block} freed twice`);
      }
      img[bit >> 3]! &= ~(1 << (bit & 7));
      this.quarantine.add(block);
      this.freeIn[i]!++;
      this.total++;
    }
  }
}

function popcount(byte: number): number {
  let n = 0;
  for (let b = byte; b; b &= b - 1) n++;
  return n;
}
