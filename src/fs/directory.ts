// A directory's names: a B+tree in the directory's own blocks, keyed by a keyed hash of the name.
// It never scans the whole directory to find a name, and changes only images it got from `write`.

import { randomBytes } from "node:crypto";
import { CorruptStoreError, eexist, einval, enoent, enospc, FsError } from "../errors.js";
import { checkDirectory } from "./directory-check.js";
import type { DirEntry, Header, Key, Kind } from "./directory-format.js";
import * as fmt from "./directory-format.js";
import { sipHash46 } from "./siphash.js";

export type { DirEntry, Key } from "./directory-format.js";
export { NAME_MAX } from "./directory-format.js";

/** A 64-bit hash shifted right by this keeps the bits a key holds. */
const HASH_SHIFT = BigInt(64 - fmt.HASH_BITS);

/** The blocks of one directory, numbered from 0. */
export interface DirectoryBlocks {
  /** Number of blocks the directory has. */
  readonly count: number;
  /** The current image of block i (do not modify it). */
  read(i: number): Promise<Buffer>;
  /** The image of block i to modify in place (inside a metadata operation). */
  write(i: number): Promise<Buffer>;
  /** Adds a zeroed block at index `count` and returns its image to modify; ENOSPC if the volume is full. */
  append(): Promise<Buffer>;
}

/** One entry of a listing; `cookie` resumes the listing just after it. */
export interface ListedEntry extends DirEntry {
  name: Buffer;
  cookie: bigint;
}

export interface DirectoryOptions {
  /** Names the directory in errors and problems, e.g. "directory inode 12". */
  label?: string;
  /** A 64-bit hash replacing the keyed SipHash (tests inject degenerate ones); every instance
   *  opened on one directory must use the same. */
  hash?: (name: Uint8Array) => bigint;
}

/** One internal node on the way down: the child taken, and whether the node is full. */
interface Step {
  block: number;
  index: number;
  full: boolean;
}
interface Descent {
  path: Step[];
  leaf: number;
  /** The smallest key not in this leaf's range (none for the rightmost leaf). */
  upper: Key | undefined;
}
/** An entry and its key, fixed for the entry's life (what an inode's names record). */
export interface KeyedEntry extends DirEntry {
  key: Key;
}
interface Found {
  path: Step[];
  leaf: number;
  off: number;
  size: number;
  entry: DirEntry;
}

/**
 * The bytes are in directory-format.ts (and docs/format.md). A key is the top 46 bits of
 * SipHash-2-4(name) << 16 | a collision index: the next free index among the names of that hash,
 * fixed for the entry's life. The SipHash key is drawn at format, so names cannot be chosen from
 * outside to collide. A readdir cookie is key + 1: a listing resumes exactly after the last entry
 * returned, whatever splits or removals happened since. A leaf left empty is freed, and an
 * internal node left childless; half-empty nodes are not merged (like ext4's htree, a directory
 * does not shrink until emptied).
 * Calls on one directory must not overlap while one of them changes it. A change that throws may
 * leave half-made changes: the caller's `MetaStore.run` undoes them.
 */
export class Directory {
  private readonly label: string;

  constructor(
    private readonly blocks: DirectoryBlocks,
    private readonly opts: DirectoryOptions = {},
  ) {
    this.label = opts.label ?? "directory";
  }

  /**
   * Makes an empty directory in blocks that have none yet (header + an empty root leaf), hashing
   * its names with SipHash key `key` (default: drawn at random; tests give one to repeat a run).
   */
  static async format(
    blocks: DirectoryBlocks,
    key: Buffer = randomBytes(fmt.SIP_KEY_BYTES),
  ): Promise<void> {
    if (blocks.count !== 0) throw einval(`format of a directory that has ${blocks.count} blocks`);
    if (key.length !== fmt.SIP_KEY_BYTES)
      throw einval(`a SipHash key of ${key.length} bytes (${fmt.SIP_KEY_BYTES} expected)`);
    const head = await blocks.append();
    fmt.writeLeaf(await blocks.append(), 1, []);
    fmt.writeHeader(head, { depth: 0, root: 1, freeHead: 0, freeCount: 0, count: 0, key }, key);
  }

  async lookup(name: Uint8Array): Promise<DirEntry | undefined> {
    this.checkName(name);
    const hdr = await this.header();
    return (await this.find(hdr, name, this.hashOf(hdr.key, name))).found?.entry;
  }

  /** Adds `name`; EEXIST if it is there. Returns the new entry's key. */
  async insert(name: Uint8Array, entry: DirEntry): Promise<Key> {
    this.checkName(name);
    this.checkEntry(entry);
    const hdr = await this.header();
    const h = this.hashOf(hdr.key, name);
    const scan = await this.find(hdr, name, h);
    if (scan.found) throw eexist(`${this.label}: ${fmt.show(name)}`);
    const key = { h, m: this.freeMinor(scan.minors) };
    const at = scan.last;
    const here = scan.leaves === 1 && (!at.upper || fmt.cmp(key, at.upper) < 0);
    const { path, leaf } = here ? at : await this.descend(hdr, key);
    await this.put(hdr, path, leaf, key, fmt.encodeEntry(key, entry, name));
    hdr.count++;
    await this.saveHeader(hdr);
    return key;
  }

  /** Removes `name`; returns its entry and key, or undefined if there was none. */
  async remove(name: Uint8Array): Promise<KeyedEntry | undefined> {
    this.checkName(name);
    const hdr = await this.header();
    const { found } = await this.find(hdr, name, this.hashOf(hdr.key, name));
    if (!found) return undefined;
    const b = await this.load(found.leaf, fmt.LEAF, 0, true);
    const key = fmt.entryKey(b, found.off);
    fmt.leafDelete(b, found.off, found.size);
    if (fmt.nodeCount(b) === 0 && found.path.length > 0) await this.unlink(hdr, found);
    hdr.count--;
    await this.saveHeader(hdr);
    return { ...found.entry, key };
  }

  /**
   * Points the existing `name` at `entry` (rename onto it), keeping the name's key; returns the
   * old entry. ENOENT if none.
   */
  async replace(name: Uint8Array, entry: DirEntry): Promise<KeyedEntry> {
    this.checkName(name);
    this.checkEntry(entry);
    const hdr = await this.header();
    const { found } = await this.find(hdr, name, this.hashOf(hdr.key, name));
    if (!found) throw enoent(`${this.label}: ${fmt.show(name)}`);
    const b = await this.load(found.leaf, fmt.LEAF, 0, true);
    const key = fmt.entryKey(b, found.off);
    fmt.setEntryTarget(b, found.off, entry);
    fmt.seal(b);
    return { ...found.entry, key };
  }

  /** The entry whose key is `key`, with its name, if there is one: one node a level. */
  async atKey(key: Key): Promise<ListedEntry | undefined> {
    const cookie = fmt.cookieOf(key);
    const [e] = await this.readdir(cookie - 1n, 1);
    return e?.cookie === cookie ? e : undefined;
  }

  /**
   * Up to `max` entries in key order, from just after the entry whose cookie is `cookie` (0: from
   * the start). Between calls, an entry present throughout and not renamed is returned exactly
   * once; one added or removed meanwhile may or may not be.
   */
  async readdir(cookie: bigint | number, max: number): Promise<ListedEntry[]> {
    const c =
      typeof cookie === "bigint" ? cookie : Number.isSafeInteger(cookie) ? BigInt(cookie) : -1n;
    if (c < 0n) throw einval(`${this.label}: readdir cookie ${cookie}`);
    const out: ListedEntry[] = [];
    if (max <= 0 || c >= fmt.MAX_COOKIE) return out;
    const hdr = await this.header();
    let from: Key = fmt.keyOfCookie(c);
    for (;;) {
      const at = await this.descend(hdr, from);
      const b = await this.load(at.leaf, fmt.LEAF, 0);
      const end = fmt.leafEnd(b);
      for (let off = fmt.N_BODY, size = 0; off < end; off += size) {
        size = fmt.entrySize(b, off);
        const k = fmt.entryKey(b, off);
        if (fmt.cmp(k, from) < 0) continue;
        const name = Buffer.from(fmt.entryName(b, off));
        out.push({
          name,
          ino: fmt.entryIno(b, off),
          type: fmt.entryType(b, off),
          cookie: fmt.cookieOf(k),
        });
        if (out.length >= max) return out;
      }
      if (!at.upper) return out;
      from = at.upper;
    }
  }

  /** Number of entries (kept in the header). */
  async size(): Promise<number> {
    return (await this.header()).count;
  }

  async isEmpty(): Promise<boolean> {
    return (await this.size()) === 0;
  }

  /** Shape of the tree: levels of internal nodes, blocks used and free. */
  async stats(): Promise<{ entries: number; depth: number; blocks: number; freeBlocks: number }> {
    const h = await this.header();
    return { entries: h.count, depth: h.depth, blocks: this.blocks.count, freeBlocks: h.freeCount };
  }

  /**
   * fsck: walks every block; returns what is wrong (empty when clean). See `checkDirectory`.
   */
  check(): Promise<string[]> {
    return checkDirectory(this.blocks, this.label, (key, name) => this.hashOf(key, name));
  }

  private async header(): Promise<Header> {
    if (this.blocks.count === 0) throw new CorruptStoreError(this.label, "not formatted");
    const b = await this.blocks.read(fmt.HEADER_BLOCK);
    const p = fmt.headerProblem(b, this.blocks.count, fmt.isVerified(b));
    if (p) throw new CorruptStoreError(`${this.label} block ${fmt.HEADER_BLOCK}`, p);
    fmt.markVerified(b);
    return fmt.readHeader(b);
  }

  private async saveHeader(h: Header): Promise<void> {
    fmt.writeHeader(await this.blocks.write(fmt.HEADER_BLOCK), h);
  }

  /** Node `i`, verified to be of `kind` at `level`; CorruptStoreError naming the block if not. */
  private async load(i: number, kind: Kind, level: number, write = false): Promise<Buffer> {
    if (!(Number.isInteger(i) && i >= 1 && i < this.blocks.count)) {
      throw new CorruptStoreError(
        `${this.label} block ${i}`,
        `beyond the ${this.blocks.count} blocks`,
      );
    }
    const b = write ? await this.blocks.write(i) : await this.blocks.read(i);
    const p = fmt.nodeProblem(b, i, fmt.isVerified(b)) ?? fmt.kindProblem(b, kind, level);
    if (p) throw new CorruptStoreError(`${this.label} block ${i}`, p);
    fmt.markVerified(b);
    return b;
  }

  private hashOf(key: Buffer, name: Uint8Array): number {
    const f = this.opts.hash;
    if (f) return Number(BigInt.asUintN(64, f(name)) >> HASH_SHIFT);
    return sipHash46(key, name);
  }

  private async descend(hdr: Header, key: Key): Promise<Descent> {
    const path: Step[] = [];
    let block = hdr.root;
    let upper: Key | undefined;
    for (let level = hdr.depth; level > 0; level--) {
      const b = await this.load(block, fmt.INNER, level);
      const n = fmt.nodeCount(b);
      let lo = 0;
      for (let hi = n; lo < hi; ) {
        const mid = (lo + hi) >>> 1;
        if (fmt.cmp(fmt.innerKey(b, mid), key) > 0) hi = mid;
        else lo = mid + 1;
      }
      if (lo < n) upper = fmt.innerKey(b, lo);
      path.push({ block, index: lo, full: n >= fmt.MAX_KEYS });
      block = fmt.innerChild(b, lo);
    }
    return { path, leaf: block, upper };
  }

  /** The entry of `name` if any, and the collision indexes in use for hash `h`, in order. */
  private async find(
    hdr: Header,
    name: Uint8Array,
    h: number,
  ): Promise<{ found?: Found; minors: number[]; leaves: number; last: Descent }> {
    const minors: number[] = [];
    let last = await this.descend(hdr, { h, m: 0 });
    for (let leaves = 1; ; leaves++) {
      const b = await this.load(last.leaf, fmt.LEAF, 0);
      const off = fmt.scanLeaf(b, h, name, minors);
      if (off === fmt.PAST_HASH) return { minors, leaves, last };
      if (off >= 0) {
        const entry = { ino: fmt.entryIno(b, off), type: fmt.entryType(b, off) };
        const size = fmt.entrySize(b, off);
        const found: Found = { path: last.path, leaf: last.leaf, off, size, entry };
        return { found, minors, leaves, last };
      }
      if (!last.upper || last.upper.h > h) return { minors, leaves, last };
      last = await this.descend(hdr, last.upper);
    }
  }

  /** A collision index not in `used` (sorted): after the last one, else the first gap. */
  private freeMinor(used: number[]): number {
    const top = used.at(-1);
    if (top === undefined) return 0;
    if (top < fmt.MINOR_MAX) return top + 1;
    const gap = used.findIndex((m, i) => m !== i);
    if (gap < 0) throw enospc(`${this.label}: ${used.length} names share one hash`);
    return gap;
  }

  /** Puts a record in its leaf, splitting the leaf and full ancestors (blocks reserved first). */
  private async put(hdr: Header, path: Step[], leaf: number, key: Key, rec: Buffer): Promise<void> {
    const b = await this.load(leaf, fmt.LEAF, 0, true);
    const used = fmt.leafUsed(b);
    const end = fmt.leafEnd(b);
    let off = fmt.N_BODY;
    let at = 0;
    for (; off < end && fmt.entryBefore(b, off, key); at++) off += fmt.entrySize(b, off);
    if (used + rec.length <= fmt.LEAF_CAP) return fmt.leafInsert(b, off, rec);
    let k = path.length - 1;
    while (k >= 0 && path[k]!.full) k--;
    const fresh = await this.reserve(hdr, path.length - k + (k < 0 ? 1 : 0));
    const recs = fmt.leafEntries(b);
    recs.splice(at, 0, rec);
    let s = 0;
    for (
      let acc = 0;
      s < recs.length - 1 && acc + recs[s]!.length <= (used + rec.length) / 2;
      s++
    ) {
      acc += recs[s]!.length;
    }
    s = Math.max(s, 1);
    let child = fresh.pop()!;
    fmt.writeLeaf(b, leaf, recs.slice(0, s));
    fmt.writeLeaf(await this.blocks.write(child), child, recs.slice(s));
    let sep = fmt.entryKey(recs[s]!, 0); // a record alone: its entry starts at 0
    for (let i = path.length - 1; i >= 0; i--) {
      const { block, index } = path[i]!;
      const level = path.length - i;
      const nb = await this.load(block, fmt.INNER, level, true);
      const { keys, children } = fmt.readInner(nb);
      keys.splice(index, 0, sep);
      children.splice(index + 1, 0, child);
      if (keys.length <= fmt.MAX_KEYS) return fmt.writeInner(nb, block, level, keys, children);
      const mid = keys.length >> 1;
      const right = fresh.pop()!;
      fmt.writeInner(nb, block, level, keys.slice(0, mid), children.slice(0, mid + 1));
      const rb = await this.blocks.write(right);
      fmt.writeInner(rb, right, level, keys.slice(mid + 1), children.slice(mid + 1));
      sep = keys[mid]!;
      child = right;
    }
    const root = fresh.pop()!;
    fmt.writeInner(await this.blocks.write(root), root, hdr.depth + 1, [sep], [hdr.root, child]);
    hdr.root = root;
    hdr.depth++;
  }

  /** Takes `n` blocks from the free list, then by appending; on ENOSPC frees what it took. */
  private async reserve(hdr: Header, n: number): Promise<number[]> {
    const got: number[] = [];
    try {
      while (got.length < n) {
        if (hdr.freeHead !== 0) {
          const i = hdr.freeHead;
          hdr.freeHead = fmt.nextFree(await this.load(i, fmt.FREE, 0));
          hdr.freeCount--;
          got.push(i);
        } else {
          const i = this.blocks.count;
          await this.blocks.append();
          got.push(i);
        }
      }
    } catch (e) {
      for (const i of got) await this.release(hdr, i);
      await this.saveHeader(hdr);
      throw e;
    }
    return got;
  }

  private async release(hdr: Header, i: number): Promise<void> {
    fmt.writeFree(await this.blocks.write(i), i, hdr.freeHead);
    hdr.freeHead = i;
    hdr.freeCount++;
  }

  /** Frees the emptied leaf of `found`, and ancestors left childless; a lone-child root goes. */
  private async unlink(hdr: Header, found: Found): Promise<void> {
    const { path, leaf } = found;
    await this.release(hdr, leaf);
    for (let i = path.length - 1; i >= 0; i--) {
      const { block, index } = path[i]!;
      const level = path.length - i;
      const nb = await this.load(block, fmt.INNER, level, true);
      const { keys, children } = fmt.readInner(nb);
      if (children.length > 1) {
        children.splice(index, 1);
        keys.splice(Math.max(index - 1, 0), 1);
        fmt.writeInner(nb, block, level, keys, children);
        break;
      }
      if (i === 0) {
        fmt.writeLeaf(nb, block, []);
        hdr.depth = 0;
        return;
      }
      await this.release(hdr, block);
    }
    while (hdr.depth > 0) {
      const rb = await this.load(hdr.root, fmt.INNER, hdr.depth);
      if (fmt.nodeCount(rb) > 0) break;
      const only = fmt.innerChild(rb, 0);
      await this.release(hdr, hdr.root);
      hdr.root = only;
      hdr.depth--;
    }
  }

  private checkName(name: Uint8Array): void {
    if (name.length > fmt.NAME_MAX) {
      throw new FsError(
        "ENAMETOOLONG",
        `${this.label}: name of ${name.length} bytes (at most ${fmt.NAME_MAX})`,
      );
    }
    const p = fmt.nameProblem(name);
    if (p) throw einval(`${this.label}: ${p}`);
  }

  private checkEntry(e: DirEntry): void {
    if (!Number.isSafeInteger(e.ino) || e.ino < 1) throw einval(`${this.label}: inode ${e.ino}`);
    if (!Number.isInteger(e.type) || e.type < 0 || e.type > fmt.TYPE_MAX) {
      throw einval(`${this.label}: file type ${e.type}`);
    }
  }
}
