// The inode table: inode slots in a file that grows 16 inodes a block, and a bitmap file of the
// numbers in use; both files' own inodes live in the system block. It never reuses a live number.

import { crc32c } from "@node-rs/crc32";
import { LRUCache } from "lru-cache";
import { CorruptStoreError, FsError } from "../errors.js";
import type { Allocator } from "./allocator.js";
import { type AllocContext, ensureBlock, mapBlock } from "./block-map.js";
import {
  copyInode,
  decodeInode,
  emptyInode,
  encodeInode,
  FLAG_ORPHAN,
  INODE_SIZE,
  type Inode,
} from "./inode.js";
import type { MetaStore } from "./meta-store.js";
import type { Superblock } from "./superblock.js";

const PER_BLOCK = 4096 / INODE_SIZE;
const BITS = 4096 * 8;
/** Inode numbers are 32-bit on disk in directories of other tools; keep below that. */
export const MAX_INODES = 2 ** 32 - 1;
/** The orphan list's head in the system block: head u32, count u32, zero u32, crc32c of those 12. */
const ORPHANS_AT = 2 * INODE_SIZE;

export interface OrphanList {
  /** First inode of the list, 0 when empty. */
  head: number;
  count: number;
}

/** Reads the orphan list's head from a system block image: all zeros is an empty list. */
export function decodeOrphanList(img: Buffer): OrphanList {
  const r = img.subarray(ORPHANS_AT, ORPHANS_AT + 16);
  if (r.every((x) => x === 0)) return { head: 0, count: 0 };
  if (r.readUInt32LE(12) !== crc32c(r.subarray(0, 12)))
    throw new CorruptStoreError("orphan list", "checksum mismatch");
  return { head: r.readUInt32LE(0), count: r.readUInt32LE(4) };
}

function encodeOrphanList(list: OrphanList, img: Buffer): void {
  const r = img.subarray(ORPHANS_AT, ORPHANS_AT + 16);
  r.fill(0);
  r.writeUInt32LE(list.head, 0);
  r.writeUInt32LE(list.count, 4);
  r.writeUInt32LE(crc32c(r.subarray(0, 12)), 12);
}

/**
 * Every method runs inside the metadata lock (`MetaStore.view` to read, `run` to change), but
 * `peek`, which only looks at the cache; every field below is guarded by that lock.
 */
export class InodeTable {
  /**
   * The inode of the table file (slot 0 of the system block) and of the bitmap file (slot 1).
   * Guarded by the metadata lock (they grow inside `meta.run`).
   */
  private table!: Inode;
  private bitmap!: Inode;
  /**
   * Inodes whose blocks are still to be freed: unlinked while open (freed at the last release),
   * or in the middle of a truncation that took several transactions. A doubly linked list
   * through the inodes, its head in the system block; a read-write open finishes them all.
   * Guarded by the metadata lock.
   */
  private orphanList: OrphanList = { head: 0, count: 0 };
  /** Where the search for a free number starts. Guarded by the metadata lock. */
  private hint = 1;
  /**
   * Decoded inodes as their slots hold them now: filled by `get`, replaced by `put`, emptied
   * when an operation is undone. Never handed out: callers get copies to change. Guarded by
   * the metadata lock; `peek` reads it outside, while the metadata store is idle.
   */
  private readonly inodes: LRUCache<number, Inode>;
  /**
   * Device blocks of the table file's blocks (table blocks never move nor go). Guarded by the
   * metadata lock.
   */
  private readonly slots = new Map<number, number>();
  /** What the block maps of the two system files need. */
  private readonly maps: AllocContext;

  private constructor(
    private readonly meta: MetaStore,
    alloc: Allocator,
    private readonly sb: Superblock,
    cachedInodes: number,
  ) {
    this.inodes = new LRUCache({ max: Math.max(1, cachedInodes) });
    this.maps = { meta, alloc };
  }

  static async load(
    meta: MetaStore,
    alloc: Allocator,
    sb: Superblock,
    opts: { cachedInodes?: number } = {},
  ): Promise<InodeTable> {
    const t = new InodeTable(meta, alloc, sb, opts.cachedInodes ?? 1 << 16);
    await t.reload();
    meta.onRollback((blocks) => {
      t.inodes.clear();
      t.slots.clear();
      if (blocks.includes(sb.systemBlock)) t.decodeSystem(meta.peek(sb.systemBlock)!);
    });
    return t;
  }

  private async reload(): Promise<void> {
    this.decodeSystem(await this.meta.read(this.sb.systemBlock));
  }

  private decodeSystem(img: Buffer): void {
    this.table = decodeInode(0, img, 0);
    this.bitmap = decodeInode(0, img, INODE_SIZE);
    this.orphanList = decodeOrphanList(img);
  }

  /** Inode slots the table has room for (some free). */
  get capacity(): number {
    return (this.table.size / INODE_SIZE) | 0;
  }

  /** Reads inode `ino`: a number past the table, or free, reads as an inode with mode 0. */
  async get(ino: number): Promise<Inode> {
    return copyInode(await this.read(ino));
  }

  /** `get`, to read only and only until the caller next waits: no copy is made. */
  async read(ino: number): Promise<Readonly<Inode>> {
    this.checkNumber(ino);
    const known = this.inodes.get(ino);
    if (known) return known;
    const block = await this.slot(ino);
    if (block === 0) return emptyInode(ino);
    const inode = decodeInode(ino, await this.meta.read(block), (ino % PER_BLOCK) * INODE_SIZE);
    this.inodes.set(ino, inode);
    return inode;
  }

  /**
   * Inode `ino` as `get` would read it, if it is decoded already or its block is in memory; else
   * undefined. It never waits. The caller must not change it, may use it only until it next
   * waits, and must call it only while no operation is in progress (`MetaStore.settled`).
   */
  peek(ino: number): Readonly<Inode> | undefined {
    const known = this.inodes.get(ino);
    if (known || !Number.isSafeInteger(ino) || ino < 1 || ino > MAX_INODES) return known;
    const block = this.slots.get(Math.floor(ino / PER_BLOCK));
    const img = block === undefined ? undefined : this.meta.peek(block);
    if (!img) return undefined;
    const inode = decodeInode(ino, img, (ino % PER_BLOCK) * INODE_SIZE);
    this.inodes.set(ino, inode);
    return inode;
  }

  /** Writes an inode back, inside a metadata operation. */
  async put(inode: Inode): Promise<void> {
    this.checkNumber(inode.ino);
    const block = await this.slot(inode.ino);
    if (block === 0)
      throw new CorruptStoreError(`inode ${inode.ino}`, "has no slot in the inode table");
    encodeInode(inode, await this.meta.write(block), (inode.ino % PER_BLOCK) * INODE_SIZE);
    this.inodes.set(inode.ino, copyInode(inode));
  }

  /** The device block of the table holding inode `ino`, 0 if the table has none yet. */
  private async slot(ino: number): Promise<number> {
    const f = Math.floor(ino / PER_BLOCK);
    const known = this.slots.get(f);
    if (known !== undefined) return known;
    const block = await mapBlock(this.maps, this.table, f);
    if (block !== 0) this.slots.set(f, block);
    return block;
  }

  /**
   * Takes a free inode number, growing the table when needed, inside a metadata operation. The
   * inode comes back with mode 0 and its generation advanced: the caller fills it in and `put`s it.
   */
  async allocate(): Promise<Inode> {
    for (let pass = 0; pass < 2; pass++) {
      const blocks = Math.ceil(this.bitmap.size / 4096);
      for (let i = Math.floor(this.hint / BITS); i < blocks; i++) {
        const dev = await mapBlock(this.maps, this.bitmap, i);
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
    const { block } = await ensureBlock(this.maps, this.bitmap, i, this.sb.systemBlock);
    this.meta.create(block);
    this.bitmap.size = (i + 1) * 4096;
    await this.saveSystem();
    this.hint = i * BITS;
    return this.allocate();
  }

  /** Frees inode `ino` (its blocks must already be freed), keeping its generation. */
  async free(ino: number): Promise<void> {
    const inode = await this.get(ino);
    if (inode.flags & FLAG_ORPHAN)
      throw new Error(`inode ${ino} is freed while on the orphan list`);
    const dev = await mapBlock(this.maps, this.bitmap, Math.floor(ino / BITS));
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

  /** The orphan list's head and length. */
  get orphans(): OrphanList {
    return { ...this.orphanList };
  }

  /**
   * Puts `inode` at the head of the orphan list (unless it is on it already) and writes it,
   * inside a metadata operation: the same one that makes it an orphan.
   */
  async addOrphan(inode: Inode): Promise<void> {
    if (inode.flags & FLAG_ORPHAN) return this.put(inode);
    const { head, count } = this.orphanList;
    if (head !== 0) {
      const next = await this.get(head);
      next.orphanPrev = inode.ino;
      await this.put(next);
    }
    inode.flags |= FLAG_ORPHAN;
    inode.orphanNext = head;
    inode.orphanPrev = 0;
    this.orphanList = { head: inode.ino, count: count + 1 };
    await this.saveSystem();
    await this.put(inode);
  }

  /** Takes `inode` off the orphan list and writes it, inside a metadata operation. */
  async removeOrphan(inode: Inode): Promise<void> {
    if (!(inode.flags & FLAG_ORPHAN)) return;
    const { orphanPrev: prev, orphanNext: next } = inode;
    if (prev !== 0) {
      const p = await this.get(prev);
      p.orphanNext = next;
      await this.put(p);
    }
    if (next !== 0) {
      const n = await this.get(next);
      n.orphanPrev = prev;
      await this.put(n);
    }
    this.orphanList = {
      head: prev === 0 ? next : this.orphanList.head,
      count: this.orphanList.count - 1,
    };
    await this.saveSystem();
    inode.flags &= ~FLAG_ORPHAN;
    inode.orphanNext = inode.orphanPrev = 0;
    await this.put(inode);
  }

  /** The inodes of the table file and of the inode-bitmap file (for fsck). */
  systemInodes(): Inode[] {
    return [this.table, this.bitmap];
  }

  /** Inode numbers in use. */
  async used(): Promise<number> {
    let n = 0;
    for (let i = 0; i * 4096 < this.bitmap.size; i++) {
      const dev = await mapBlock(this.maps, this.bitmap, i);
      if (dev === 0) continue;
      for (const byte of await this.meta.read(dev)) for (let b = byte; b; b &= b - 1) n++;
    }
    return n;
  }

  /** True when `ino` is marked in use. */
  async inUse(ino: number): Promise<boolean> {
    const dev = await mapBlock(this.maps, this.bitmap, Math.floor(ino / BITS));
    if (dev === 0) return false;
    const bit = ino % BITS;
    return ((await this.meta.read(dev))[bit >> 3]! & (1 << (bit & 7))) !== 0;
  }

  /** Makes sure the table has a block for slot `ino`. */
  private async slotFor(ino: number): Promise<void> {
    const f = Math.floor(ino / PER_BLOCK);
    if ((await this.slot(ino)) !== 0) return;
    const { block } = await ensureBlock(this.maps, this.table, f, this.sb.systemBlock);
    this.meta.create(block);
    this.table.size = Math.max(this.table.size, (f + 1) * 4096);
    await this.saveSystem();
  }

  private async saveSystem(): Promise<void> {
    const img = await this.meta.write(this.sb.systemBlock);
    encodeInode(this.table, img, 0);
    encodeInode(this.bitmap, img, INODE_SIZE);
    encodeOrphanList(this.orphanList, img);
  }

  private checkNumber(ino: number): void {
    if (!Number.isSafeInteger(ino) || ino < 1 || ino > MAX_INODES)
      throw new FsError("EINVAL", `inode number ${ino}`);
  }
}
