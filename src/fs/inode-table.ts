// The inode table: inode slots in a file that grows 16 inodes a block, and a bitmap file of the
// numbers in use; both files' own inodes live in the system block. It never reuses a live number.

import { CorruptStoreError, FsError } from "../errors.js";
import type { Allocator } from "./allocator.js";
import { ensureBlock, mapBlock } from "./block-map.js";
import { decodeInode, emptyInode, encodeInode, INODE_SIZE, type Inode } from "./inode.js";
import type { MetaStore } from "./meta-store.js";
import type { Superblock } from "./superblock.js";

const PER_BLOCK = 4096 / INODE_SIZE;
const BITS = 4096 * 8;
/** Inode numbers are 32-bit on disk in directories of other tools; keep below that. */
export const MAX_INODES = 2 ** 32 - 1;

export class InodeTable {
  /** The inode of the table file (slot 0 of the system block) and of the bitmap file (slot 1). */
  private table!: Inode;
  private bitmap!: Inode;
  /** Where the search for a free number starts. */
  private hint = 1;

  private constructor(
    private readonly meta: MetaStore,
    private readonly alloc: Allocator,
    private readonly sb: Superblock,
  ) {}

  static async load(meta: MetaStore, alloc: Allocator, sb: Superblock): Promise<InodeTable> {
    const t = new InodeTable(meta, alloc, sb);
    await t.reload();
    meta.onRollback((blocks) => {
      if (blocks.includes(sb.systemBlock)) {
        const img = meta.peek(sb.systemBlock)!;
        t.table = decodeInode(0, img, 0);
        t.bitmap = decodeInode(0, img, INODE_SIZE);
      }
    });
    return t;
  }

  private async reload(): Promise<void> {
    const img = await this.meta.read(this.sb.systemBlock);
    this.table = decodeInode(0, img, 0);
    this.bitmap = decodeInode(0, img, INODE_SIZE);
  }

  /** Inode slots the table has room for (some free). */
  get capacity(): number {
    return (this.table.size / INODE_SIZE) | 0;
  }

  /** Reads inode `ino`: a number past the table, or free, reads as an inode with mode 0. */
  async get(ino: number): Promise<Inode> {
    this.checkNumber(ino);
    const block = await mapBlock(this.meta, this.table, Math.floor(ino / PER_BLOCK));
    if (block === 0) return emptyInode(ino);
    return decodeInode(ino, await this.meta.read(block), (ino % PER_BLOCK) * INODE_SIZE);
  }

  /** Writes an inode back, inside a metadata operation. */
  async put(inode: Inode): Promise<void> {
    this.checkNumber(inode.ino);
    const block = await mapBlock(this.meta, this.table, Math.floor(inode.ino / PER_BLOCK));
    if (block === 0)
      throw new CorruptStoreError(`inode ${inode.ino}`, "has no slot in the inode table");
    encodeInode(inode, await this.meta.write(block), (inode.ino % PER_BLOCK) * INODE_SIZE);
  }

  /**
   * Takes a free inode number, growing the table when needed, inside a metadata operation. The
   * inode comes back with mode 0 and its generation advanced: the caller fills it in and `put`s it.
   */
  async allocate(): Promise<Inode> {
    for (let pass = 0; pass < 2; pass++) {
      const blocks = Math.ceil(this.bitmap.size / 4096);
      for (let i = Math.floor(this.hint / BITS); i < blocks; i++) {
        const dev = await mapBlock(this.meta, this.bitmap, i);
        const img = await this.meta.read(dev);
        const from = i === Math.floor(this.hint / BITS) ? this.hint % BITS : 0;
        for (let bit = from; bit < BITS; bit++) {
          if (img[bit >> 3] === 0xff && (bit & 7) === 0) {
            bit += 7;
            continue;
          }
          if (img[bit >> 3]! & (1 << (bit & 7))) continue;
          const ino = i * BITS + bit;
          if (ino === 0) continue;
          if (ino > MAX_INODES) throw new FsError("ENOSPC", "no inode numbers left");
          (await this.meta.write(dev))[bit >> 3]! |= 1 << (bit & 7);
          this.hint = ino + 1;
          await this.slotFor(ino);
          const old = await this.get(ino);
          const fresh = emptyInode(ino);
          fresh.generation = (old.generation + 1) >>> 0;
          return fresh;
        }
      }
      if (pass === 0 && this.hint > 1) this.hint = 1;
      else break;
    }
    // Every number in the bitmap is taken: add a bitmap block.
    const i = Math.ceil(this.bitmap.size / 4096);
    const { block } = await ensureBlock(this.meta, this.alloc, this.bitmap, i, this.sb.systemBlock);
    this.meta.create(block);
    this.bitmap.size = (i + 1) * 4096;
    await this.saveSystem();
    this.hint = i * BITS;
    return this.allocate();
  }

  /** Frees inode `ino` (its blocks must already be freed), keeping its generation. */
  async free(ino: number): Promise<void> {
    const inode = await this.get(ino);
    const dev = await mapBlock(this.meta, this.bitmap, Math.floor(ino / BITS));
    const bit = ino % BITS;
    const img = dev ? await this.meta.write(dev) : undefined;
    if (!img || !(img[bit >> 3]! & (1 << (bit & 7))))
      throw new CorruptStoreError(`inode ${ino}`, "freed twice");
    img[bit >> 3]! &= ~(1 << (bit & 7));
    const cleared = emptyInode(ino);
    cleared.generation = inode.generation;
    await this.put(cleared);
    this.hint = Math.min(this.hint, ino);
  }

  /** The inodes of the table file and of the inode-bitmap file (for fsck). */
  systemInodes(): Inode[] {
    return [this.table, this.bitmap];
  }

  /** Inode numbers in use. */
  async used(): Promise<number> {
    let n = 0;
    for (let i = 0; i * 4096 < this.bitmap.size; i++) {
      const dev = await mapBlock(this.meta, this.bitmap, i);
      if (dev === 0) continue;
      for (const byte of await this.meta.read(dev)) for (let b = byte; b; b &= b - 1) n++;
    }
    return n;
  }

  /** True when `ino` is marked in use. */
  async inUse(ino: number): Promise<boolean> {
    const dev = await mapBlock(this.meta, this.bitmap, Math.floor(ino / BITS));
    if (dev === 0) return false;
    const bit = ino % BITS;
    return ((await this.meta.read(dev))[bit >> 3]! & (1 << (bit & 7))) !== 0;
  }

  /** Makes sure the table has a block for slot `ino`. */
  private async slotFor(ino: number): Promise<void> {
    const f = Math.floor(ino / PER_BLOCK);
    if ((await mapBlock(this.meta, this.table, f)) !== 0) return;
    const { block } = await ensureBlock(this.meta, this.alloc, this.table, f, this.sb.systemBlock);
    this.meta.create(block);
    this.table.size = Math.max(this.table.size, (f + 1) * 4096);
    await this.saveSystem();
  }

  private async saveSystem(): Promise<void> {
    const img = await this.meta.write(this.sb.systemBlock);
    encodeInode(this.table, img, 0);
    encodeInode(this.bitmap, img, INODE_SIZE);
  }

  private checkNumber(ino: number): void {
    if (!Number.isSafeInteger(ino) || ino < 1 || ino > MAX_INODES)
      throw new FsError("EINVAL", `inode number ${ino}`);
  }
}
