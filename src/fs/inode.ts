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
// this is several times faster than going through BigInt.
const HI = 2 ** 32;
const putU64 = (b: Buffer, at: number, v: number) => {
  b.writeUInt32LE(v >>> 0, at);
  b.writeUInt32LE(Math.floor(v / HI), at + 4);
};
const getU64 = (b: Buffer, at: number) => b.readUInt32LE(at) + b.readUInt32LE(at + 4) * HI;
const putTime = (b: Buffer, at: number, t: Time) => {
  b.writeUInt32LE(t.sec >>> 0, at);
  b.writeInt32LE(Math.floor(t.sec / HI), at + 4);
  b.writeUInt32LE(t.nsec, at + 8);
};
const getTime = (b: Buffer, at: number): Time => ({
  sec: b.readUInt32LE(at) + b.readInt32LE(at + 4) * HI,
  nsec: b.readUInt32LE(at + 8),
});

/** Layout: see docs/format.md (filesystem). */
export function encodeInode(ino: Inode, into: Buffer, at: number): void {
  const b = into.subarray(at, at + INODE_SIZE);
  b.fill(0);
  b.writeUInt32LE(ino.mode, 0);
  b.writeUInt32LE(ino.uid, 4);
  b.writeUInt32LE(ino.gid, 8);
  b.writeUInt32LE(ino.nlink, 12);
  putU64(b, 16, ino.size);
  putU64(b, 24, ino.blocks);
  putTime(b, 32, ino.atime);
  putTime(b, 44, ino.mtime);
  putTime(b, 56, ino.ctime);
  putTime(b, 68, ino.birthtime);
  b.writeUInt32LE((ino.flags & ~FLAG_INLINE) | (ino.inline ? FLAG_INLINE : 0), 80);
  b.writeUInt32LE(ino.generation, 84);
  putU64(b, 88, ino.rdev);
  putU64(b, 96, ino.xattrBlock);
  if (ino.inline) {
    b[104] = ino.inline.length;
    ino.inline.copy(b, 105);
  } else {
    for (const [i, p] of ino.ptrs.entries()) b.writeUInt32LE(p, 104 + 4 * i);
  }
  b.writeUInt32LE(ino.orphanNext, 164);
  b.writeUInt32LE(ino.orphanPrev, 168);
  if (ino.names.length > NAME_REFS)
    throw new Error(`inode ${ino.ino} lists ${ino.names.length} names`);
  for (const [i, r] of ino.names.entries()) {
    const at = NAMES_AT + i * NAME_REF_SIZE;
    b.writeUInt32LE(r.parent, at);
    b.writeUInt16LE(r.m, at + 4);
    b.writeUIntLE(r.h, at + 6, 6);
  }
  b.writeUInt32LE(crc32c(b.subarray(0, INODE_SIZE - 4)), INODE_SIZE - 4);
}

/** Decodes inode `ino` from `from` at `at`; an all-zero slot is a free inode. */
export function decodeInode(ino: number, from: Buffer, at: number): Inode {
  const b = from.subarray(at, at + INODE_SIZE);
  const out = emptyInode(ino);
  if (b.readUInt32LE(INODE_SIZE - 4) === 0 && b.every((x) => x === 0)) return out;
  if (b.readUInt32LE(INODE_SIZE - 4) !== crc32c(b.subarray(0, INODE_SIZE - 4))) {
    throw new CorruptStoreError(`inode ${ino}`, "checksum mismatch");
  }
  out.mode = b.readUInt32LE(0);
  out.uid = b.readUInt32LE(4);
  out.gid = b.readUInt32LE(8);
  out.nlink = b.readUInt32LE(12);
  out.size = getU64(b, 16);
  out.blocks = getU64(b, 24);
  out.atime = getTime(b, 32);
  out.mtime = getTime(b, 44);
  out.ctime = getTime(b, 56);
  out.birthtime = getTime(b, 68);
  const flags = b.readUInt32LE(80);
  out.flags = flags & ~FLAG_INLINE;
  out.generation = b.readUInt32LE(84);
  out.rdev = getU64(b, 88);
  out.xattrBlock = getU64(b, 96);
  if (flags & FLAG_INLINE) {
    const len = b[104]!;
    if (len > INLINE_BYTES - 1)
      throw new CorruptStoreError(`inode ${ino}`, `inline data of ${len} bytes`);
    out.inline = Buffer.from(b.subarray(105, 105 + len));
  } else for (let i = 0; i < out.ptrs.length; i++) out.ptrs[i] = b.readUInt32LE(104 + 4 * i);
  out.orphanNext = b.readUInt32LE(164);
  out.orphanPrev = b.readUInt32LE(168);
  for (let i = 0; i < NAME_REFS; i++) {
    const at = NAMES_AT + i * NAME_REF_SIZE;
    const parent = b.readUInt32LE(at);
    if (parent !== 0)
      out.names.push({ parent, m: b.readUInt16LE(at + 4), h: b.readUIntLE(at + 6, 6) });
  }
  return out;
}
