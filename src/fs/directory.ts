// A directory's names: a B+tree in the directory's own blocks, keyed by a keyed hash of the name.
// It never scans the whole directory to find a name, and changes only images it got from `write`.

import { randomBytes } from "node:crypto";
import { crc32c } from "@node-rs/crc32";

import { CorruptStoreError, eexist, einval, enoent, enospc, FsError } from "../errors.js";
import { sipHash46 } from "./siphash.js";

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

/** What a name maps to: an inode and its file type (DT_REG = 8, DT_DIR = 4, DT_LNK = 10, …). */
export interface DirEntry {
  ino: number;
  type: number;
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

export const NAME_MAX = 255;
const BS = 4096;
const CRC = BS - 4; // a node block ends with the crc32c of its bytes [0, 4092)
const H_CRC = 60; // the header (block 0) is 64 bytes, ending with the crc32c of bytes [0, 60)
const VERSION = 1;
const u32 = (s: string) => Buffer.from(s, "latin1").readUInt32LE(0);
const SHDW = u32("SHDW"); // magics are 8 bytes: "SHDW" + "DIRH" | "DIRL" | "DIRI" | "DIRF"
const [HEAD, LEAF, INNER, FREE] = ["DIRH", "DIRL", "DIRI", "DIRF"].map(u32) as [
  number,
  number,
  number,
  number,
];
const BODY = 24; // node header: magic 8, level u16 @8, count u16 @10, self u32 @12, used/next @16
const LEAF_CAP = CRC - BODY;
const E_HEAD = 18; // leaf entry: key u64, ino u64, type u8, name length u8, name
const PAIRS = BODY + 4; // internal node: child0 u32 @24, then {key u64, child u32} pairs
const MAX_KEYS = Math.floor((CRC - PAIRS) / 12);
const MINOR_MAX = 0xffff;
/** Cookies are key + 1, keys below 2^62: they fit a non-negative 64-bit off_t. */
const MAX_COOKIE = 1n << 62n;

/** A tree key: 46 bits of the name's hash, then a collision index unique within that hash. */
interface Key {
  h: number;
  m: number;
}
interface Header {
  depth: number;
  root: number;
  freeHead: number;
  freeCount: number;
  count: number;
  key: Buffer;
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
interface Found {
  path: Step[];
  leaf: number;
  off: number;
  size: number;
  entry: DirEntry;
}

/**
 * Layout (4096-byte blocks, little-endian; a node ends with the crc32c of its first 4092 bytes):
 *   block 0, header: "SHDWDIRH", version u32 @8, depth u32 @12 (0: the root is a leaf),
 *     root u32 @16, free-list head u32 @20 (0 = none), free blocks u32 @24, entries u64 @32,
 *     SipHash key 16 bytes @40, crc32c of bytes [0, 60) @60; the rest of the block is zero
 *   every other block: magic, level u16 @8 (leaves 0), count u16 @10, its own index u32 @12
 *     (a block written to the wrong place is caught), then by kind:
 *   leaf "SHDWDIRL": bytes used u16 @16; from @24, entries sorted by key,
 *     {key u64, ino u64, type u8, name length u8, name}
 *   internal "SHDWDIRI": child0 u32 @24, then {key u64, child u32} pairs; child i holds the keys
 *     in [key i-1, key i)
 *   free "SHDWDIRF": next free block u32 @16
 * A key is the top 46 bits of SipHash-2-4(name) << 16 | a collision index: the next free index
 * among the names of that hash, fixed for the entry's life. The SipHash key is drawn at format,
 * so names cannot be chosen from outside to collide. A readdir cookie is key + 1: a listing
 * resumes exactly after the last entry returned, whatever splits or removals happened since.
 * A leaf left empty is freed, and an internal node left childless; half-empty nodes are not
 * merged (like ext4's htree, a directory does not shrink until emptied).
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

  /** Makes an empty directory in blocks that have none yet (header + an empty root leaf). */
  static async format(blocks: DirectoryBlocks): Promise<void> {
    if (blocks.count !== 0) throw einval(`format of a directory that has ${blocks.count} blocks`);
    const head = await blocks.append();
    writeLeaf(await blocks.append(), 1, []);
    const key = randomBytes(16);
    writeHeader(head, { depth: 0, root: 1, freeHead: 0, freeCount: 0, count: 0, key }, key);
  }

  async lookup(name: Uint8Array): Promise<DirEntry | undefined> {
    this.checkName(name);
    const hdr = await this.header();
    return (await this.find(hdr, name, this.hashOf(hdr.key, name))).found?.entry;
  }

  /** Adds `name`; EEXIST if it is there. */
  async insert(name: Uint8Array, entry: DirEntry): Promise<void> {
    this.checkName(name);
    this.checkEntry(entry);
    const hdr = await this.header();
    const h = this.hashOf(hdr.key, name);
    const scan = await this.find(hdr, name, h);
    if (scan.found) throw eexist(`${this.label}: ${show(name)}`);
    const key = { h, m: this.freeMinor(scan.minors) };
    const at = scan.last;
    const here = scan.leaves === 1 && (!at.upper || cmp(key, at.upper) < 0);
    const { path, leaf } = here ? at : await this.descend(hdr, key);
    await this.put(hdr, path, leaf, key, record(key, entry, name));
    hdr.count++;
    await this.saveHeader(hdr);
  }

  /** Removes `name`; returns its entry, or undefined if there was none. */
  async remove(name: Uint8Array): Promise<DirEntry | undefined> {
    this.checkName(name);
    const hdr = await this.header();
    const { found } = await this.find(hdr, name, this.hashOf(hdr.key, name));
    if (!found) return undefined;
    const b = await this.load(found.leaf, LEAF, 0, true);
    const end = BODY + b.readUInt16LE(16);
    b.copyWithin(found.off, found.off + found.size, end);
    b.fill(0, end - found.size, end);
    b.writeUInt16LE(end - BODY - found.size, 16);
    b.writeUInt16LE(b.readUInt16LE(10) - 1, 10);
    seal(b);
    if (b.readUInt16LE(10) === 0 && found.path.length > 0) await this.unlink(hdr, found);
    hdr.count--;
    await this.saveHeader(hdr);
    return found.entry;
  }

  /** Points the existing `name` at `entry` (rename onto it); returns the old entry. ENOENT if none. */
  async replace(name: Uint8Array, entry: DirEntry): Promise<DirEntry> {
    this.checkName(name);
    this.checkEntry(entry);
    const hdr = await this.header();
    const { found } = await this.find(hdr, name, this.hashOf(hdr.key, name));
    if (!found) throw enoent(`${this.label}: ${show(name)}`);
    const b = await this.load(found.leaf, LEAF, 0, true);
    wr64(b, found.off + 8, entry.ino);
    b[found.off + 16] = entry.type;
    seal(b);
    return found.entry;
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
    if (max <= 0 || c >= MAX_COOKIE) return out;
    const hdr = await this.header();
    let from: Key = { h: Number(c >> 16n), m: Number(c & 0xffffn) };
    for (;;) {
      const at = await this.descend(hdr, from);
      const b = await this.load(at.leaf, LEAF, 0);
      const end = BODY + b.readUInt16LE(16);
      for (let off = BODY, size = 0; off < end; off += size) {
        size = E_HEAD + b[off + 17]!;
        const k = readKey(b, off);
        if (cmp(k, from) < 0) continue;
        const name = Buffer.from(b.subarray(off + E_HEAD, off + size));
        out.push({ name, ino: rd64(b, off + 8), type: b[off + 16]!, cookie: cookieOf(k) });
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
   * fsck: walks every block; returns what is wrong (empty when clean). Checks checksums, kinds,
   * levels, key order and ranges, each name's hash and validity, counts, the free list, and that
   * every block is used exactly once. It throws nothing for damage it can describe.
   */
  async check(): Promise<string[]> {
    const problems: string[] = [];
    const say = (block: number, what: string) =>
      problems.push(`${this.label} block ${block}: ${what}`);
    const hb = this.blocks.count > 0 ? await this.blocks.read(0) : undefined;
    const hp = hb ? headerProblem(hb, this.blocks.count, false) : "no blocks: not formatted";
    if (hp || !hb) return [`${this.label} block 0: ${hp}`];
    const hdr = readHeader(hb);
    const seen = new Set<number>([0]);
    let entries = 0;
    let group = { h: -1, names: new Set<string>() };
    const walk = async (block: number, level: number, lo?: Key, hi?: Key): Promise<void> => {
      if (!(block >= 1 && block < this.blocks.count))
        return void say(block, "beyond the directory");
      if (seen.has(block)) return void say(block, "referenced twice");
      seen.add(block);
      const b = await this.blocks.read(block);
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
      const end = BODY + b.readUInt16LE(16);
      let n = 0;
      let prev: Key | undefined;
      for (let off = BODY, size = 0; off < end; off += size, n++) {
        size = E_HEAD + (b[off + 17] ?? 0);
        if (off + size > end) return void say(block, `entry ${n} overruns the leaf`);
        const k = readKey(b, off);
        const name = b.subarray(off + E_HEAD, off + size);
        const what = `entry ${show(name)}`;
        if (prev && cmp(prev, k) >= 0) say(block, `${what} out of key order`);
        if (!inRange(k)) say(block, `${what} outside the leaf's key range`);
        const bad = nameProblem(name);
        if (bad) say(block, `${what}: ${bad}`);
        else if (this.hashOf(hdr.key, name) !== k.h) say(block, `${what} filed under another hash`);
        if (group.h !== k.h) group = { h: k.h, names: new Set() };
        if (group.names.has(name.toString("latin1"))) say(block, `${what} stored twice`);
        group.names.add(name.toString("latin1"));
        const ino = rd64(b, off + 8);
        if (!Number.isSafeInteger(ino) || ino < 1) say(block, `${what}: inode ${ino}`);
        if (b[off + 16]! > 15) say(block, `${what}: file type ${b[off + 16]}`);
        prev = k;
      }
      if (n !== b.readUInt16LE(10))
        say(block, `holds ${n} entries, its count says ${b.readUInt16LE(10)}`);
      if (n === 0 && block !== hdr.root) say(block, "empty leaf left in the tree");
      entries += n;
    };
    await walk(hdr.root, hdr.depth);
    if (entries !== hdr.count) say(0, `counts ${hdr.count} entries, the tree holds ${entries}`);
    let free = 0;
    for (let i = hdr.freeHead; i !== 0; free++) {
      if (i >= this.blocks.count || seen.has(i)) {
        say(i, i >= this.blocks.count ? "free list leads beyond the directory" : "free but in use");
        break;
      }
      seen.add(i);
      const b = await this.blocks.read(i);
      const p = nodeProblem(b, i, false) ?? kindProblem(b, FREE, 0);
      if (p) {
        say(i, `free list: ${p}`);
        break;
      }
      i = b.readUInt32LE(16);
    }
    if (free !== hdr.freeCount) say(0, `counts ${hdr.freeCount} free blocks, the list has ${free}`);
    for (let i = 1; i < this.blocks.count; i++)
      if (!seen.has(i)) say(i, "neither in the tree nor free");
    return problems;
  }

  private async header(): Promise<Header> {
    if (this.blocks.count === 0) throw new CorruptStoreError(this.label, "not formatted");
    const b = await this.blocks.read(0);
    const p = headerProblem(b, this.blocks.count, verified.has(b));
    if (p) throw new CorruptStoreError(`${this.label} block 0`, p);
    verified.add(b);
    return readHeader(b);
  }

  private async saveHeader(h: Header): Promise<void> {
    writeHeader(await this.blocks.write(0), h);
  }

  /** Node `i`, verified to be of `kind` at `level`; CorruptStoreError naming the block if not. */
  private async load(i: number, kind: number, level: number, write = false): Promise<Buffer> {
    if (!(Number.isInteger(i) && i >= 1 && i < this.blocks.count)) {
      throw new CorruptStoreError(
        `${this.label} block ${i}`,
        `beyond the ${this.blocks.count} blocks`,
      );
    }
    const b = write ? await this.blocks.write(i) : await this.blocks.read(i);
    const p = nodeProblem(b, i, verified.has(b)) ?? kindProblem(b, kind, level);
    if (p) throw new CorruptStoreError(`${this.label} block ${i}`, p);
    verified.add(b);
    return b;
  }

  private hashOf(key: Buffer, name: Uint8Array): number {
    const f = this.opts.hash;
    if (f) return Number(BigInt.asUintN(64, f(name)) >> 18n);
    return sipHash46(key, name);
  }

  private async descend(hdr: Header, key: Key): Promise<Descent> {
    const path: Step[] = [];
    let block = hdr.root;
    let upper: Key | undefined;
    for (let level = hdr.depth; level > 0; level--) {
      const b = await this.load(block, INNER, level);
      const n = b.readUInt16LE(10);
      let lo = 0;
      for (let hi = n; lo < hi; ) {
        const mid = (lo + hi) >>> 1;
        if (cmp(readKey(b, PAIRS + 12 * mid), key) > 0) hi = mid;
        else lo = mid + 1;
      }
      if (lo < n) upper = readKey(b, PAIRS + 12 * lo);
      path.push({ block, index: lo, full: n >= MAX_KEYS });
      block = b.readUInt32LE(lo === 0 ? BODY : PAIRS + 12 * lo - 4);
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
      const b = await this.load(last.leaf, LEAF, 0);
      const end = BODY + b.readUInt16LE(16);
      for (let off = BODY, size = 0; off < end; off += size) {
        const len = b[off + 17]!;
        size = E_HEAD + len;
        const eh = b.readUIntLE(off + 2, 6);
        if (eh > h) return { minors, leaves, last };
        if (eh < h) continue;
        minors.push(b.readUInt16LE(off));
        if (len === name.length && same(b, off + E_HEAD, name)) {
          const entry = { ino: rd64(b, off + 8), type: b[off + 16]! };
          const found: Found = { path: last.path, leaf: last.leaf, off, size, entry };
          return { found, minors, leaves, last };
        }
      }
      if (!last.upper || last.upper.h > h) return { minors, leaves, last };
      last = await this.descend(hdr, last.upper);
    }
  }

  /** A collision index not in `used` (sorted): after the last one, else the first gap. */
  private freeMinor(used: number[]): number {
    const top = used.at(-1);
    if (top === undefined) return 0;
    if (top < MINOR_MAX) return top + 1;
    const gap = used.findIndex((m, i) => m !== i);
    if (gap < 0) throw enospc(`${this.label}: ${used.length} names share one hash`);
    return gap;
  }

  /** Puts a record in its leaf, splitting the leaf and full ancestors (blocks reserved first). */
  private async put(hdr: Header, path: Step[], leaf: number, key: Key, rec: Buffer): Promise<void> {
    const b = await this.load(leaf, LEAF, 0, true);
    const used = b.readUInt16LE(16);
    let off = BODY;
    let at = 0;
    for (; off < BODY + used && before(b, off, key); at++) off += E_HEAD + b[off + 17]!;
    if (used + rec.length <= LEAF_CAP) {
      b.copyWithin(off + rec.length, off, BODY + used);
      rec.copy(b, off);
      b.writeUInt16LE(used + rec.length, 16);
      b.writeUInt16LE(b.readUInt16LE(10) + 1, 10);
      return seal(b);
    }
    let k = path.length - 1;
    while (k >= 0 && path[k]!.full) k--;
    const fresh = await this.reserve(hdr, path.length - k + (k < 0 ? 1 : 0));
    const recs = leafRecords(b);
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
    writeLeaf(b, leaf, recs.slice(0, s));
    writeLeaf(await this.blocks.write(child), child, recs.slice(s));
    let sep = readKey(recs[s]!, 0);
    for (let i = path.length - 1; i >= 0; i--) {
      const { block, index } = path[i]!;
      const level = path.length - i;
      const nb = await this.load(block, INNER, level, true);
      const { keys, children } = readInner(nb);
      keys.splice(index, 0, sep);
      children.splice(index + 1, 0, child);
      if (keys.length <= MAX_KEYS) return writeInner(nb, block, level, keys, children);
      const mid = keys.length >> 1;
      const right = fresh.pop()!;
      writeInner(nb, block, level, keys.slice(0, mid), children.slice(0, mid + 1));
      const rb = await this.blocks.write(right);
      writeInner(rb, right, level, keys.slice(mid + 1), children.slice(mid + 1));
      sep = keys[mid]!;
      child = right;
    }
    const root = fresh.pop()!;
    writeInner(await this.blocks.write(root), root, hdr.depth + 1, [sep], [hdr.root, child]);
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
          hdr.freeHead = (await this.load(i, FREE, 0)).readUInt32LE(16);
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
    const b = await this.blocks.write(i);
    b.fill(0);
    stamp(b, FREE, 0, 0, i);
    b.writeUInt32LE(hdr.freeHead, 16);
    seal(b);
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
      const nb = await this.load(block, INNER, level, true);
      const { keys, children } = readInner(nb);
      if (children.length > 1) {
        children.splice(index, 1);
        keys.splice(Math.max(index - 1, 0), 1);
        writeInner(nb, block, level, keys, children);
        break;
      }
      if (i === 0) {
        writeLeaf(nb, block, []);
        hdr.depth = 0;
        return;
      }
      await this.release(hdr, block);
    }
    while (hdr.depth > 0) {
      const rb = await this.load(hdr.root, INNER, hdr.depth);
      if (rb.readUInt16LE(10) > 0) break;
      const only = rb.readUInt32LE(BODY);
      await this.release(hdr, hdr.root);
      hdr.root = only;
      hdr.depth--;
    }
  }

  private checkName(name: Uint8Array): void {
    if (name.length > NAME_MAX) {
      throw new FsError(
        "ENAMETOOLONG",
        `${this.label}: name of ${name.length} bytes (at most ${NAME_MAX})`,
      );
    }
    const p = nameProblem(name);
    if (p) throw einval(`${this.label}: ${p}`);
  }

  private checkEntry(e: DirEntry): void {
    if (!Number.isSafeInteger(e.ino) || e.ino < 1) throw einval(`${this.label}: inode ${e.ino}`);
    if (!Number.isInteger(e.type) || e.type < 0 || e.type > 15) {
      throw einval(`${this.label}: file type ${e.type}`);
    }
  }
}

function nameProblem(name: Uint8Array): string | undefined {
  if (name.length === 0) return "empty name";
  if (name.length > NAME_MAX) return `name of ${name.length} bytes`;
  if (name.includes(0x2f)) return `name ${show(name)} contains '/'`;
  if (name.includes(0)) return `name ${show(name)} contains NUL`;
  if (name[0] === 0x2e && (name.length === 1 || (name.length === 2 && name[1] === 0x2e))) {
    return `${show(name)} is not stored`;
  }
  return undefined;
}

const show = (name: Uint8Array) => JSON.stringify(Buffer.from(name).toString());
const cmp = (a: Key, b: Key) => (a.h !== b.h ? a.h - b.h : a.m - b.m);
const readKey = (b: Buffer, off: number): Key => ({
  m: b.readUInt16LE(off),
  h: b.readUIntLE(off + 2, 6),
});
/** Whether `name` is stored at `off` (a loop: Buffer.compare with offsets costs more for names). */
function same(b: Buffer, off: number, name: Uint8Array): boolean {
  for (let i = 0; i < name.length; i++) if (b[off + i] !== name[i]) return false;
  return true;
}

/** Whether the key at `off` sorts before `k` (without making a Key: this runs on every entry). */
function before(b: Buffer, off: number, k: Key): boolean {
  const h = b.readUIntLE(off + 2, 6);
  return h < k.h || (h === k.h && b.readUInt16LE(off) < k.m);
}
const cookieOf = (k: Key) => (BigInt(k.h) << 16n) + BigInt(k.m) + 1n;
const rd64 = (b: Buffer, off: number) => b.readUInt32LE(off) + b.readUInt32LE(off + 4) * 2 ** 32;

function wr64(b: Buffer, off: number, v: number): void {
  b.writeUInt32LE(v % 2 ** 32, off);
  b.writeUInt32LE(Math.floor(v / 2 ** 32), off + 4);
}

function writeKey(b: Buffer, off: number, k: Key): void {
  b.writeUInt16LE(k.m, off);
  b.writeUIntLE(k.h, off + 2, 6);
}

/**
 * Node images whose checksum holds: verified once, or sealed here. Like ext4's buffer_verified,
 * a block is checked when an image of it first comes from the store, not at every access.
 */
const verified = new WeakSet<Buffer>();

function seal(b: Buffer): void {
  b.writeUInt32LE(crc32c(b.subarray(0, CRC)), CRC);
  verified.add(b);
}

function stamp(b: Buffer, kind: number, level: number, count: number, self: number): void {
  b.writeUInt32LE(SHDW, 0);
  b.writeUInt32LE(kind, 4);
  b.writeUInt16LE(level, 8);
  b.writeUInt16LE(count, 10);
  b.writeUInt32LE(self, 12);
}

function record(key: Key, e: DirEntry, name: Uint8Array): Buffer {
  const r = Buffer.alloc(E_HEAD + name.length);
  writeKey(r, 0, key);
  wr64(r, 8, e.ino);
  r[16] = e.type;
  r[17] = name.length;
  r.set(name, E_HEAD);
  return r;
}

function leafRecords(b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  const end = BODY + b.readUInt16LE(16);
  for (let off = BODY, size = 0; off < end; off += size) {
    size = E_HEAD + b[off + 17]!;
    out.push(Buffer.from(b.subarray(off, off + size)));
  }
  return out;
}

function writeLeaf(b: Buffer, self: number, recs: Buffer[]): void {
  b.fill(0);
  stamp(b, LEAF, 0, recs.length, self);
  let off = BODY;
  for (const r of recs) off += r.copy(b, off);
  b.writeUInt16LE(off - BODY, 16);
  seal(b);
}

function readInner(b: Buffer): { keys: Key[]; children: number[] } {
  const n = b.readUInt16LE(10);
  const keys: Key[] = [];
  const children = [b.readUInt32LE(BODY)];
  for (let i = 0; i < n; i++) {
    keys.push(readKey(b, PAIRS + 12 * i));
    children.push(b.readUInt32LE(PAIRS + 12 * i + 8));
  }
  return { keys, children };
}

function writeInner(b: Buffer, self: number, level: number, keys: Key[], children: number[]): void {
  b.fill(0);
  stamp(b, INNER, level, keys.length, self);
  b.writeUInt32LE(children[0]!, BODY);
  keys.forEach((k, i) => {
    writeKey(b, PAIRS + 12 * i, k);
    b.writeUInt32LE(children[i + 1]!, PAIRS + 12 * i + 8);
  });
  seal(b);
}

function nodeProblem(b: Buffer, i: number, trusted: boolean): string | undefined {
  if (b.length !== BS) return `${b.length} bytes, not ${BS}`;
  if (!trusted && b.readUInt32LE(CRC) !== crc32c(b.subarray(0, CRC))) return "checksum mismatch";
  if (b.readUInt32LE(0) !== SHDW) return "bad magic";
  if (b.readUInt32LE(12) !== i) return `written as block ${b.readUInt32LE(12)}`;
  const kind = b.readUInt32LE(4);
  if (kind === LEAF && b.readUInt16LE(16) > LEAF_CAP) return "leaf overfull";
  if (kind === INNER && b.readUInt16LE(10) > MAX_KEYS) return "internal node overfull";
  return undefined;
}

function kindProblem(b: Buffer, kind: number, level: number): string | undefined {
  if (b.readUInt32LE(4) !== kind) {
    const want = Buffer.alloc(4);
    want.writeUInt32LE(kind);
    return `a ${b.toString("latin1", 4, 8)} block where a ${want.toString("latin1")} was due`;
  }
  if (kind === INNER && b.readUInt16LE(8) !== level)
    return `level ${b.readUInt16LE(8)}, not ${level}`;
  return undefined;
}

function headerProblem(b: Buffer, count: number, trusted: boolean): string | undefined {
  if (b.length !== BS) return `${b.length} bytes, not ${BS}`;
  if (b.readUInt32LE(0) !== SHDW || b.readUInt32LE(4) !== HEAD)
    return "not a directory (bad magic)";
  if (!trusted && b.readUInt32LE(H_CRC) !== crc32c(b.subarray(0, H_CRC)))
    return "checksum mismatch";
  if (b.readUInt32LE(8) !== VERSION) return `unknown directory version ${b.readUInt32LE(8)}`;
  const root = b.readUInt32LE(16);
  if (root < 1 || root >= count) return `root ${root} beyond the ${count} blocks`;
  if (b.readUInt32LE(12) > 8) return `depth ${b.readUInt32LE(12)}`;
  return undefined;
}

function readHeader(b: Buffer): Header {
  return {
    depth: b.readUInt32LE(12),
    root: b.readUInt32LE(16),
    freeHead: b.readUInt32LE(20),
    freeCount: b.readUInt32LE(24),
    count: rd64(b, 32),
    key: b.subarray(40, 56),
  };
}

/** Writes the header fields (not the key, which never changes, unless `key` is given). */
function writeHeader(b: Buffer, h: Header, key?: Buffer): void {
  b.writeUInt32LE(SHDW, 0);
  b.writeUInt32LE(HEAD, 4);
  b.writeUInt32LE(VERSION, 8);
  b.writeUInt32LE(h.depth, 12);
  b.writeUInt32LE(h.root, 16);
  b.writeUInt32LE(h.freeHead, 20);
  b.writeUInt32LE(h.freeCount, 24);
  wr64(b, 32, h.count);
  key?.copy(b, 40);
  b.writeUInt32LE(crc32c(b.subarray(0, H_CRC)), H_CRC);
  verified.add(b);
}
