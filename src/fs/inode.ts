// The 256-byte on-disk inode and its in-memory form: attributes with nanosecond times, and the
// block pointers of the file's map. Pure encode/decode; it never reads or writes a device.

import { crc32c } from "@node-rs/crc32";
import { CorruptStoreError } from "../errors.js";

export const INODE_SIZE = 256;
export const DIRECT = 12;
/** Bytes of the pointer area, which holds a short symlink's target instead (a "fast" symlink). */
export const INLINE_BYTES = (DIRECT + 3) * 4;
/** Flag bit 0: the pointer area holds inline data (set by `encodeInode` from `inline`). */
const FLAG_INLINE = 1;
/** Flag bit 1: the inode is on the orphan list (see `InodeTable.addOrphan`). */
export const FLAG_ORPHAN = 2;
/** Flag bit 2: the inode has more names than `names` lists (see name-refs.ts). */
export const FLAG_MORE_NAMES = 4;
/** Names an inode lists (format 2): 12 bytes each from offset 172. */
export const NAME_REFS = 6;
const NAMES_AT = 172;
const NAME_REF_SIZE = 12;

/**
 * One name of an inode: the directory holding it and the entry's key there (hash `h`, collision
 * index `m`), fixed for the entry's life; the directory finds the name from the key.
 */
export interface NameRef {
  parent: number;
  h: number;
  m: number;
}

/** Seconds and nanoseconds since the epoch. */
export interface Time {
  sec: number;
  nsec: number;
}

export interface Inode {
  ino: number;
  /** File type and permission bits as in st_mode; 0 for a free inode. */
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  size: number;
  /** 4 KiB blocks the file owns: data and indirect blocks. */
  blocks: number;
  atime: Time;
  mtime: Time;
  ctime: Time;
  birthtime: Time;
  flags: number;
  /** Bumped each time the inode number is reused, so stale handles can be told apart. */
  generation: number;
  rdev: number;
  /** Block holding the extended attributes, 0 if none. */
  xattrBlock: number;
  /** 12 direct pointers, then single, double and triple indirect (0 = hole). */
  ptrs: number[];
  /** The target of a symlink stored in the pointer area, when short enough. */
  inline: Buffer | undefined;
  /** Neighbours on the orphan list (0 = none); meaningful with `FLAG_ORPHAN` only. */
  orphanNext: number;
  orphanPrev: number;
  /**
   * Its names (format 2; none in format 1), at most NAME_REFS: every one unless
   * `FLAG_MORE_NAMES` is set. Kept by the operations that make and remove names (name-refs.ts).
   */
  names: NameRef[];
}

export function emptyInode(ino: number): Inode {
  const zero = { sec: 0, nsec: 0 };
  return {
    ino,
    mode: 0,
    uid: 0,
    gid: 0,
    nlink: 0,
    size: 0,
    blocks: 0,
    atime: { ...zero },
    mtime: { ...zero },
    ctime: { ...zero },
    birthtime: { ...zero },
    flags: 0,
    generation: 0,
    rdev: 0,
    xattrBlock: 0,
    ptrs: new Array<number>(DIRECT + 3).fill(0),
    inline: undefined,
    orphanNext: 0,
    orphanPrev: 0,
    names: [],
  };
}

/** A copy of an inode that shares nothing with it. */
export function copyInode(i: Inode): Inode {
  // Field by field: a spread of this object is many times slower.
  return {
    ino: i.ino,
    mode: i.mode,
    uid: i.uid,
    gid: i.gid,
    nlink: i.nlink,
    size: i.size,
    blocks: i.blocks,
    atime: { sec: i.atime.sec, nsec: i.atime.nsec },
    mtime: { sec: i.mtime.sec, nsec: i.mtime.nsec },
    ctime: { sec: i.ctime.sec, nsec: i.ctime.nsec },
    birthtime: { sec: i.birthtime.sec, nsec: i.birthtime.nsec },
    flags: i.flags,
    generation: i.generation,
    rdev: i.rdev,
    xattrBlock: i.xattrBlock,
    ptrs: i.ptrs.slice(),
    inline: i.inline && Buffer.from(i.inline),
    orphanNext: i.orphanNext,
    orphanPrev: i.orphanPrev,
    names: i.names.length === 0 ? [] : i.names.map((r) => ({ parent: r.parent, h: r.h, m: r.m })),
  };
}

// 64-bit fields as two 32-bit halves: their values stay below 2^53 (times: |sec| < 2^53), and
// this is several times faster than going through BigInt. Encoding and decoding go through a
// DataView of the slot: a Buffer's readUInt32LE and writeUInt32LE check their arguments on every
// call, which made up most of the cost of an inode (0.8 µs each way).
const HI = 2 ** 32;
const view = (b: Buffer, at: number) => new DataView(b.buffer, b.byteOffset + at, INODE_SIZE);
const putU64 = (d: DataView, at: number, v: number) => {
  d.setUint32(at, v >>> 0, true);
  d.setUint32(at + 4, Math.floor(v / HI), true);
};
const getU64 = (d: DataView, at: number) => d.getUint32(at, true) + d.getUint32(at + 4, true) * HI;
const putTime = (d: DataView, at: number, t: Time) => {
  d.setUint32(at, t.sec >>> 0, true);
  d.setInt32(at + 4, Math.floor(t.sec / HI), true);
  d.setUint32(at + 8, t.nsec, true);
};
const getTime = (d: DataView, at: number): Time => ({
  sec: d.getUint32(at, true) + d.getInt32(at + 4, true) * HI,
  nsec: d.getUint32(at + 8, true),
});

/** Layout: see docs/format.md (filesystem). */
export function encodeInode(ino: Inode, into: Buffer, at: number): void {
  if (ino.names.length > NAME_REFS)
    throw new Error(`inode ${ino.ino} lists ${ino.names.length} names`);
  const b = into.subarray(at, at + INODE_SIZE);
  const d = view(into, at);
  b.fill(0);
  d.setUint32(0, ino.mode, true);
  d.setUint32(4, ino.uid, true);
  d.setUint32(8, ino.gid, true);
  d.setUint32(12, ino.nlink, true);
  putU64(d, 16, ino.size);
  putU64(d, 24, ino.blocks);
  putTime(d, 32, ino.atime);
  putTime(d, 44, ino.mtime);
  putTime(d, 56, ino.ctime);
  putTime(d, 68, ino.birthtime);
  d.setUint32(80, (ino.flags & ~FLAG_INLINE) | (ino.inline ? FLAG_INLINE : 0), true);
  d.setUint32(84, ino.generation, true);
  putU64(d, 88, ino.rdev);
  putU64(d, 96, ino.xattrBlock);
  if (ino.inline) {
    b[104] = ino.inline.length;
    ino.inline.copy(b, 105);
  } else {
    const { ptrs } = ino;
    for (let i = 0; i < ptrs.length; i++) d.setUint32(104 + 4 * i, ptrs[i]!, true);
  }
  d.setUint32(164, ino.orphanNext, true);
  d.setUint32(168, ino.orphanPrev, true);
  const { names } = ino;
  for (let i = 0; i < names.length; i++) {
    const r = names[i]!;
    const at = NAMES_AT + i * NAME_REF_SIZE;
    d.setUint32(at, r.parent, true);
    d.setUint16(at + 4, r.m, true);
    putU48(d, at + 6, r.h);
  }
  d.setUint32(INODE_SIZE - 4, crc32c(b.subarray(0, INODE_SIZE - 4)), true);
}

/** A name's 48-bit hash field: 16 low bits, then 32 high. */
const putU48 = (d: DataView, at: number, v: number) => {
  d.setUint16(at, v & 0xffff, true);
  d.setUint32(at + 2, Math.floor(v / 0x10000), true);
};
const getU48 = (d: DataView, at: number) =>
  d.getUint16(at, true) + d.getUint32(at + 2, true) * 0x10000;

/** Decodes inode `ino` from `from` at `at`; an all-zero slot is a free inode. */
export function decodeInode(ino: number, from: Buffer, at: number): Inode {
  const b = from.subarray(at, at + INODE_SIZE);
  const d = view(from, at);
  const sum = d.getUint32(INODE_SIZE - 4, true);
  if (sum === 0 && b.every((x) => x === 0)) return emptyInode(ino);
  if (sum !== crc32c(b.subarray(0, INODE_SIZE - 4))) {
    throw new CorruptStoreError(`inode ${ino}`, "checksum mismatch");
  }
  const flags = d.getUint32(80, true);
  let inline: Buffer | undefined;
  const ptrs = new Array<number>(DIRECT + 3);
  if (flags & FLAG_INLINE) {
    const len = b[104]!;
    if (len > INLINE_BYTES - 1)
      throw new CorruptStoreError(`inode ${ino}`, `inline data of ${len} bytes`);
    inline = Buffer.from(b.subarray(105, 105 + len));
    ptrs.fill(0);
  } else for (let i = 0; i < ptrs.length; i++) ptrs[i] = d.getUint32(104 + 4 * i, true);
  const names: NameRef[] = [];
  for (let i = 0; i < NAME_REFS; i++) {
    const at = NAMES_AT + i * NAME_REF_SIZE;
    const parent = d.getUint32(at, true);
    if (parent !== 0) names.push({ parent, m: d.getUint16(at + 4, true), h: getU48(d, at + 6) });
  }
  return {
    ino,
    mode: d.getUint32(0, true),
    uid: d.getUint32(4, true),
    gid: d.getUint32(8, true),
    nlink: d.getUint32(12, true),
    size: getU64(d, 16),
    blocks: getU64(d, 24),
    atime: getTime(d, 32),
    mtime: getTime(d, 44),
    ctime: getTime(d, 56),
    birthtime: getTime(d, 68),
    flags: flags & ~FLAG_INLINE,
    generation: d.getUint32(84, true),
    rdev: getU64(d, 88),
    xattrBlock: getU64(d, 96),
    ptrs,
    inline,
    orphanNext: d.getUint32(164, true),
    orphanPrev: d.getUint32(168, true),
    names,
  };
}
