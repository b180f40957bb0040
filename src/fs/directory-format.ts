// The bytes of a directory's blocks (docs/format.md, "Directory"): header, leaf, internal and free
// nodes, leaf entries and tree keys. Pure encode, decode and verify; no I/O, and no tree logic.

import { crc32c } from "@node-rs/crc32";

/*
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
 * A key u64 is the collision index in its low 16 bits (u16 @0) under 46 bits of hash (u48 @2).
 */

export const BLOCK_SIZE = 4096;
export const VERSION = 1;
export const NAME_MAX = 255;
/** File types an entry may carry (DT_* values, 4 bits). */
export const TYPE_MAX = 15;
/** Deepest tree a header may claim: 8 levels of internal nodes hold far more than 2^32 names. */
export const DEPTH_MAX = 8;
/** Collision indexes run from 0 to this within one hash. */
export const MINOR_MAX = 0xffff;

/** The header is block 0 of the directory; every other block is a node. */
export const HEADER_BLOCK = 0;
/** Bits of a name's hash in its key (SipHash-2-4's top bits), above the 16-bit collision index. */
export const HASH_BITS = 46;

/** Every node: the crc32c of bytes [0, NODE_CRC) is stored at NODE_CRC. */
export const NODE_CRC = BLOCK_SIZE - 4;

// Header (block 0): 64 bytes, then zeros.
export const H_VERSION = 8;
export const H_DEPTH = 12;
export const H_ROOT = 16;
export const H_FREE_HEAD = 20;
export const H_FREE_COUNT = 24;
export const H_ENTRIES = 32;
export const H_SIP_KEY = 40;
export const SIP_KEY_BYTES = 16;
/** The header's crc32c covers bytes [0, H_CRC). */
export const H_CRC = 60;

// Node header, every block but 0.
export const N_MAGIC = 0;
export const N_KIND = 4;
export const N_LEVEL = 8;
export const N_COUNT = 10;
export const N_SELF = 12;
/** Leaf: bytes of entries in use. */
export const N_USED = 16;
/** Free node: the next free block (0 = last). */
export const N_NEXT_FREE = 16;
/** Where a leaf's entries and an internal node's child0 begin. */
export const N_BODY = 24;

// Leaf entry, at its offset in the leaf.
export const E_KEY = 0;
export const E_INO = 8;
export const E_TYPE = 16;
export const E_NAME_LEN = 17;
export const E_NAME = 18;

// Internal node: child0 u32 at N_BODY, then pairs {key u64, child u32} from I_PAIRS.
export const I_PAIRS = N_BODY + 4;
export const PAIR_SIZE = 12;
export const PAIR_CHILD = 8;

/** Bytes of entries a leaf holds. */
export const LEAF_CAP = NODE_CRC - N_BODY;
/** Keys an internal node holds. */
export const MAX_KEYS = Math.floor((NODE_CRC - I_PAIRS) / PAIR_SIZE);

const u32 = (s: string) => Buffer.from(s, "latin1").readUInt32LE(0);
/** Magics are 8 bytes: "SHDW" then the kind, "DIRH" | "DIRL" | "DIRI" | "DIRF". */
const SHDW = u32("SHDW");
export const HEAD = u32("DIRH");
export const LEAF = u32("DIRL");
export const INNER = u32("DIRI");
export const FREE = u32("DIRF");
export type Kind = typeof HEAD | typeof LEAF | typeof INNER | typeof FREE;

/** Cookies are key + 1, keys below 2^62: they fit a non-negative 64-bit off_t. */
export const MAX_COOKIE = 1n << 62n;

/** A tree key: 46 bits of the name's hash, then a collision index unique within that hash. */
export interface Key {
  h: number;
  m: number;
}

/** The header's fields; `key` (the SipHash key) is written only when a directory is formatted. */
export interface Header {
  depth: number;
  root: number;
  freeHead: number;
  freeCount: number;
  count: number;
  key: Buffer;
}

/** What a name maps to: an inode and its file type (DT_REG = 8, DT_DIR = 4, DT_LNK = 10, …). */
export interface DirEntry {
  ino: number;
  type: number;
}

// ------------------------------------------------------------------ keys and integers

export const cmp = (a: Key, b: Key) => (a.h !== b.h ? a.h - b.h : a.m - b.m);
export const cookieOf = (k: Key) => (BigInt(k.h) << 16n) + BigInt(k.m) + 1n;
/** The key a listing resumes from after `cookie` (the entry's key + 1 is the next key). */
export const keyOfCookie = (c: bigint): Key => ({ h: Number(c >> 16n), m: Number(c & 0xffffn) });

export const readKey = (b: Buffer, off: number): Key => ({
  m: b.readUInt16LE(off),
  h: b.readUIntLE(off + 2, 6),
});

function writeKey(b: Buffer, off: number, k: Key): void {
  b.writeUInt16LE(k.m, off);
  b.writeUIntLE(k.h, off + 2, 6);
}

const rd64 = (b: Buffer, off: number) => b.readUInt32LE(off) + b.readUInt32LE(off + 4) * 2 ** 32;

function wr64(b: Buffer, off: number, v: number): void {
  b.writeUInt32LE(v % 2 ** 32, off);
  b.writeUInt32LE(Math.floor(v / 2 ** 32), off + 4);
}

// ------------------------------------------------------------------ node fields

export const nodeCount = (b: Buffer) => b.readUInt16LE(N_COUNT);
export const nodeLevel = (b: Buffer) => b.readUInt16LE(N_LEVEL);
/** The end of a leaf's entries. */
export const leafEnd = (b: Buffer) => N_BODY + b.readUInt16LE(N_USED);
export const leafUsed = (b: Buffer) => b.readUInt16LE(N_USED);
export const nextFree = (b: Buffer) => b.readUInt32LE(N_NEXT_FREE);

// ------------------------------------------------------------------ leaf entries

// The readers below run on every entry a lookup passes: they take offsets, and make no objects.

/** Bytes of the entry at `off`: its fixed part and its name. */
export const entrySize = (b: Buffer, off: number) => E_NAME + b[off + E_NAME_LEN]!;
export const entryNameLen = (b: Buffer, off: number) => b[off + E_NAME_LEN]!;
/** The 46-bit hash of the entry's key. */
export const entryHash = (b: Buffer, off: number) => b.readUIntLE(off + E_KEY + 2, 6);
/** The collision index of the entry's key. */
export const entryMinor = (b: Buffer, off: number) => b.readUInt16LE(off + E_KEY);
export const entryKey = (b: Buffer, off: number) => readKey(b, off + E_KEY);
export const entryIno = (b: Buffer, off: number) => rd64(b, off + E_INO);
export const entryType = (b: Buffer, off: number) => b[off + E_TYPE]!;
/** The entry's name, sharing the leaf's memory. */
export const entryName = (b: Buffer, off: number) =>
  b.subarray(off + E_NAME, off + E_NAME + b[off + E_NAME_LEN]!);

/** Whether the entry at `off` is named `name` (a loop: Buffer.compare with offsets costs more). */
export function entryIs(b: Buffer, off: number, name: Uint8Array): boolean {
  if (b[off + E_NAME_LEN] !== name.length) return false;
  const at = off + E_NAME;
  for (let i = 0; i < name.length; i++) if (b[at + i] !== name[i]) return false;
  return true;
}

/** Where a leaf scan for hash `h` stopped: at a later hash, or at the leaf's end. */
export const PAST_HASH = -1;
export const LEAF_END = -2;

/**
 * Scans a leaf for `name` under hash `h`, pushing the collision index of every entry with that
 * hash onto `minors`: the entry's offset if found, else PAST_HASH or LEAF_END.
 */
export function scanLeaf(b: Buffer, h: number, name: Uint8Array, minors: number[]): number {
  const end = leafEnd(b);
  for (let off = N_BODY; off < end; off += entrySize(b, off)) {
    const eh = entryHash(b, off);
    if (eh > h) return PAST_HASH;
    if (eh < h) continue;
    minors.push(entryMinor(b, off));
    if (entryIs(b, off, name)) return off;
  }
  return LEAF_END;
}

/** Whether the key of the entry at `off` sorts before `k` (without making a Key). */
export function entryBefore(b: Buffer, off: number, k: Key): boolean {
  const h = entryHash(b, off);
  return h < k.h || (h === k.h && entryMinor(b, off) < k.m);
}

/** An entry's bytes, to go in a leaf. */
export function encodeEntry(key: Key, e: DirEntry, name: Uint8Array): Buffer {
  const r = Buffer.alloc(E_NAME + name.length);
  writeKey(r, E_KEY, key);
  wr64(r, E_INO, e.ino);
  r[E_TYPE] = e.type;
  r[E_NAME_LEN] = name.length;
  r.set(name, E_NAME);
  return r;
}

/** Points the entry at `off` at another inode (its key and name stay). Seal the leaf after. */
export function setEntryTarget(b: Buffer, off: number, e: DirEntry): void {
  wr64(b, off + E_INO, e.ino);
  b[off + E_TYPE] = e.type;
}

/** Copies of a leaf's entries, in order. */
export function leafEntries(b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  const end = leafEnd(b);
  for (let off = N_BODY, size = 0; off < end; off += size) {
    size = entrySize(b, off);
    out.push(Buffer.from(b.subarray(off, off + size)));
  }
  return out;
}

/** Puts entry `rec` at `off` of a leaf that has room for it (LEAF_CAP), and seals the leaf. */
export function leafInsert(b: Buffer, off: number, rec: Buffer): void {
  const used = leafUsed(b);
  b.copyWithin(off + rec.length, off, N_BODY + used);
  rec.copy(b, off);
  b.writeUInt16LE(used + rec.length, N_USED);
  b.writeUInt16LE(nodeCount(b) + 1, N_COUNT);
  seal(b);
}

/** Takes the entry of `size` bytes at `off` out of a leaf, and seals the leaf. */
export function leafDelete(b: Buffer, off: number, size: number): void {
  const end = leafEnd(b);
  b.copyWithin(off, off + size, end);
  b.fill(0, end - size, end);
  b.writeUInt16LE(end - N_BODY - size, N_USED);
  b.writeUInt16LE(nodeCount(b) - 1, N_COUNT);
  seal(b);
}

// ------------------------------------------------------------------ whole nodes

/**
 * Node images whose checksum holds: verified once, or sealed here. Like ext4's buffer_verified,
 * a block is checked when an image of it first comes from the store, not at every access.
 */
const verified = new WeakSet<Buffer>();

export const isVerified = (b: Buffer) => verified.has(b);
export const markVerified = (b: Buffer) => void verified.add(b);

/** Writes a node's checksum; the image is then known good. */
export function seal(b: Buffer): void {
  b.writeUInt32LE(crc32c(b.subarray(0, NODE_CRC)), NODE_CRC);
  verified.add(b);
}

function stamp(b: Buffer, kind: Kind, level: number, count: number, self: number): void {
  b.writeUInt32LE(SHDW, N_MAGIC);
  b.writeUInt32LE(kind, N_KIND);
  b.writeUInt16LE(level, N_LEVEL);
  b.writeUInt16LE(count, N_COUNT);
  b.writeUInt32LE(self, N_SELF);
}

/** Makes `b` leaf block `self` holding entries `recs` (in key order). */
export function writeLeaf(b: Buffer, self: number, recs: Buffer[]): void {
  b.fill(0);
  stamp(b, LEAF, 0, recs.length, self);
  let off = N_BODY;
  for (const r of recs) off += r.copy(b, off);
  b.writeUInt16LE(off - N_BODY, N_USED);
  seal(b);
}

/** Makes `b` free block `self`, before `next` on the free list. */
export function writeFree(b: Buffer, self: number, next: number): void {
  b.fill(0);
  stamp(b, FREE, 0, 0, self);
  b.writeUInt32LE(next, N_NEXT_FREE);
  seal(b);
}

/** Key `i` of an internal node (0 ≤ i < count). */
export const innerKey = (b: Buffer, i: number) => readKey(b, I_PAIRS + PAIR_SIZE * i);
/** Child `i` of an internal node (0 ≤ i ≤ count): child0, then the child after key i-1. */
export const innerChild = (b: Buffer, i: number) =>
  b.readUInt32LE(i === 0 ? N_BODY : I_PAIRS + PAIR_SIZE * (i - 1) + PAIR_CHILD);

export function readInner(b: Buffer): { keys: Key[]; children: number[] } {
  const n = nodeCount(b);
  const keys: Key[] = [];
  const children = [innerChild(b, 0)];
  for (let i = 0; i < n; i++) {
    keys.push(innerKey(b, i));
    children.push(innerChild(b, i + 1));
  }
  return { keys, children };
}

/** Makes `b` internal block `self` at `level`: children.length === keys.length + 1. */
export function writeInner(
  b: Buffer,
  self: number,
  level: number,
  keys: Key[],
  children: number[],
): void {
  b.fill(0);
  stamp(b, INNER, level, keys.length, self);
  b.writeUInt32LE(children[0]!, N_BODY);
  keys.forEach((k, i) => {
    writeKey(b, I_PAIRS + PAIR_SIZE * i, k);
    b.writeUInt32LE(children[i + 1]!, I_PAIRS + PAIR_SIZE * i + PAIR_CHILD);
  });
  seal(b);
}

/** What is wrong with node image `b` as block `i` (checksum unless `trusted`), or undefined. */
export function nodeProblem(b: Buffer, i: number, trusted: boolean): string | undefined {
  if (b.length !== BLOCK_SIZE) return `${b.length} bytes, not ${BLOCK_SIZE}`;
  if (!trusted && b.readUInt32LE(NODE_CRC) !== crc32c(b.subarray(0, NODE_CRC)))
    return "checksum mismatch";
  if (b.readUInt32LE(N_MAGIC) !== SHDW) return "bad magic";
  if (b.readUInt32LE(N_SELF) !== i) return `written as block ${b.readUInt32LE(N_SELF)}`;
  const kind = b.readUInt32LE(N_KIND);
  if (kind === LEAF && leafUsed(b) > LEAF_CAP) return "leaf overfull";
  if (kind === INNER && nodeCount(b) > MAX_KEYS) return "internal node overfull";
  return undefined;
}

/** What is wrong with a sound node `b` where a node of `kind` at `level` was due, or undefined. */
export function kindProblem(b: Buffer, kind: Kind, level: number): string | undefined {
  if (b.readUInt32LE(N_KIND) !== kind) {
    const want = Buffer.alloc(4);
    want.writeUInt32LE(kind);
    const found = b.toString("latin1", N_KIND, N_KIND + 4);
    return `a ${found} block where a ${want.toString("latin1")} was due`;
  }
  if (kind === INNER && nodeLevel(b) !== level) return `level ${nodeLevel(b)}, not ${level}`;
  return undefined;
}

// ------------------------------------------------------------------ header

/** What is wrong with header image `b` of a directory of `count` blocks, or undefined. */
export function headerProblem(b: Buffer, count: number, trusted: boolean): string | undefined {
  if (b.length !== BLOCK_SIZE) return `${b.length} bytes, not ${BLOCK_SIZE}`;
  if (b.readUInt32LE(N_MAGIC) !== SHDW || b.readUInt32LE(N_KIND) !== HEAD)
    return "not a directory (bad magic)";
  if (!trusted && b.readUInt32LE(H_CRC) !== crc32c(b.subarray(0, H_CRC)))
    return "checksum mismatch";
  if (b.readUInt32LE(H_VERSION) !== VERSION)
    return `unknown directory version ${b.readUInt32LE(H_VERSION)}`;
  const root = b.readUInt32LE(H_ROOT);
  if (root < 1 || root >= count) return `root ${root} beyond the ${count} blocks`;
  if (b.readUInt32LE(H_DEPTH) > DEPTH_MAX) return `depth ${b.readUInt32LE(H_DEPTH)}`;
  return undefined;
}

/** The header's fields; `key` shares the image's memory. */
export function readHeader(b: Buffer): Header {
  return {
    depth: b.readUInt32LE(H_DEPTH),
    root: b.readUInt32LE(H_ROOT),
    freeHead: b.readUInt32LE(H_FREE_HEAD),
    freeCount: b.readUInt32LE(H_FREE_COUNT),
    count: rd64(b, H_ENTRIES),
    key: b.subarray(H_SIP_KEY, H_SIP_KEY + SIP_KEY_BYTES),
  };
}

/** Writes the header fields (not the key, which never changes, unless `key` is given). */
export function writeHeader(b: Buffer, h: Header, key?: Buffer): void {
  b.writeUInt32LE(SHDW, N_MAGIC);
  b.writeUInt32LE(HEAD, N_KIND);
  b.writeUInt32LE(VERSION, H_VERSION);
  b.writeUInt32LE(h.depth, H_DEPTH);
  b.writeUInt32LE(h.root, H_ROOT);
  b.writeUInt32LE(h.freeHead, H_FREE_HEAD);
  b.writeUInt32LE(h.freeCount, H_FREE_COUNT);
  wr64(b, H_ENTRIES, h.count);
  key?.copy(b, H_SIP_KEY);
  b.writeUInt32LE(crc32c(b.subarray(0, H_CRC)), H_CRC);
  verified.add(b);
}

/** What is wrong with `name` as a stored name, or undefined. */
export function nameProblem(name: Uint8Array): string | undefined {
  if (name.length === 0) return "empty name";
  if (name.length > NAME_MAX) return `name of ${name.length} bytes`;
  if (name.includes(0x2f)) return `name ${show(name)} contains '/'`;
  if (name.includes(0)) return `name ${show(name)} contains NUL`;
  if (name[0] === 0x2e && (name.length === 1 || (name.length === 2 && name[1] === 0x2e))) {
    return `${show(name)} is not stored`;
  }
  return undefined;
}

/** A name for messages. */
export const show = (name: Uint8Array) => JSON.stringify(Buffer.from(name).toString());
