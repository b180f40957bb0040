// The golden filesystem's recipe: the tree, its attributes and times, and the bytes of every
// file, shared by scripts/make-golden-fs.ts and test/fs/golden.test.ts. It computes; it never
// touches a device.

import {
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFREG,
  S_IFSOCK,
} from "../../src/fs/attr.js";
import type { Time } from "../../src/fs/inode.js";

/** Where the golden image of a format version lives (gzip), relative to the repository root. */
export const goldenFs = (version: number) => `test/fixtures/golden-fs-v${version}.img.gz`;
/** The format versions with a golden image: each made once, by the code of its version. */
export const GOLDEN_VERSIONS = [1, 2];
export const GOLDEN_FS_SIZE = 4 << 20;
export const BS = 4096;
/** The journal mkfs gives a 4 MiB device (the smallest it makes). */
export const GOLDEN_JOURNAL_BLOCKS = 64;

/** A name made and removed first, so that the next file reuses its inode number. */
export const DOOMED = "doomed";

/** Bytes written at file offset `offset`: they depend on the file and the offset only. */
export function pattern(seed: number, offset: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) {
    const pos = offset + i;
    b[i] = (seed * 101 + (pos % 251) + Math.floor(pos / BS) * 7) & 0xff || 1;
  }
  return b;
}

export interface GoldenNode {
  /** Path from the root ("" is the root); for the orphan, the name it had. */
  path: string;
  ino: number;
  generation: number;
  mode: number;
  uid: number;
  gid: number;
  rdev?: number;
  /** Symlink target. */
  target?: string;
  /** Data written, in order (a file's size is the end of the last write unless `size`). */
  writes?: Array<{ offset: number; length: number }>;
  size?: number;
  xattrs?: Record<string, Buffer>;
  /** Further names (hard links), made once every node exists. */
  links?: string[];
  /** 4 KiB blocks owned (data, indirect, xattr); undefined where the directory's hash decides. */
  blocks?: number;
  birth: Time;
  atime: Time;
  mtime: Time;
  ctime: Time;
  /** Unlinked while open at the end: on the orphan list of the image. */
  orphan?: true;
  /** Made by the last transaction, which the image holds in its journal only (replayed at open). */
  journal?: true;
}

const BASE = Date.UTC(2026, 0, 5, 9, 0, 0) / 1000;
/** Time `which` (0 birth, 1 atime, 2 mtime, 3 ctime) of the `k`th node: all distinct, with ns. */
const at = (k: number, which: number): Time => ({
  sec: BASE + 100 * k + 10 * which,
  nsec: (k * 1_000_003 + which * 250_000_001 + 7) % 1_000_000_000,
});
/** When the last transaction (the one left in the journal) ran. */
export const JOURNAL_TIME: Time = { sec: BASE + 86_400, nsec: 999_999_999 };

const SPARSE_SIZE = 60_000;
/** File blocks of the single, double and triple indirect ranges. */
const SINGLE = 12;
const DOUBLE = 12 + 1024;
const TRIPLE = 12 + 1024 + 1024 ** 2;
export const BIG_ENTRIES = 300;

type Spec = Omit<GoldenNode, "ino" | "generation" | "birth" | "atime" | "mtime" | "ctime"> & {
  generation?: number;
};

const specs: Spec[] = [
  // Two directory blocks, and one for the attribute the journalled transaction sets.
  { path: "", mode: S_IFDIR | 0o755, uid: 0, gid: 0, blocks: 3 },
  {
    path: "small.txt",
    generation: 2, // the number of DOOMED, reused
    mode: S_IFREG | 0o644,
    uid: 1000,
    gid: 100,
    writes: [{ offset: 0, length: 20 }],
    xattrs: {
      "user.color": Buffer.from("blue"),
      "user.empty": Buffer.alloc(0),
      "security.selinux": Buffer.from("system_u:object_r:etc_t:s0\0"),
    },
    links: ["big/small-link"],
    blocks: 2,
  },
  {
    path: "multi.bin",
    mode: S_IFREG | 0o600,
    uid: 1000,
    gid: 100,
    writes: [{ offset: 0, length: 3 * BS + 100 }],
    blocks: 4,
  },
  {
    path: "sparse.bin",
    mode: S_IFREG | 0o640,
    uid: 1001,
    gid: 100,
    writes: [
      { offset: 0, length: 3000 },
      { offset: 10 * BS + 123, length: 5000 },
    ],
    size: SPARSE_SIZE, // a hole from block 1 to 9, and after block 11 to the end
    blocks: 3,
  },
  {
    path: "indirect.bin",
    mode: S_IFREG | 0o4755,
    uid: 0,
    gid: 0,
    writes: [
      { offset: SINGLE * BS, length: BS },
      { offset: (DOUBLE + 3) * BS + 10, length: 20 },
      { offset: (TRIPLE + 1024 + 5) * BS, length: 100 },
    ],
    // data 3; single 1; double 1 + 1; triple 1 + 1 + 1
    blocks: 9,
  },
  { path: "sym-short", mode: S_IFLNK | 0o777, uid: 1000, gid: 100, target: "small.txt", blocks: 0 },
  {
    path: "sym-long",
    mode: S_IFLNK | 0o777,
    uid: 1000,
    gid: 100,
    target: `${"a-long-directory-name/".repeat(13)}target`,
    blocks: 1,
  },
  { path: "fifo", mode: S_IFIFO | 0o640, uid: 1000, gid: 100, blocks: 0 },
  {
    path: "null",
    mode: S_IFCHR | 0o666,
    uid: 0,
    gid: 0,
    rdev: (1 << 8) | 3,
    xattrs: { "user.bytes": Buffer.from(Array.from({ length: 256 }, (_, i) => i)) },
    blocks: 1,
  },
  { path: "sda", mode: S_IFBLK | 0o660, uid: 0, gid: 6, rdev: 8 << 8, blocks: 0 },
  { path: "socket", mode: S_IFSOCK | 0o755, uid: 1000, gid: 100, blocks: 0 },
  { path: "nested", mode: S_IFDIR | 0o2775, uid: 1000, gid: 50, blocks: 2 },
  { path: "nested/deeper", mode: S_IFDIR | 0o700, uid: 1000, gid: 50, blocks: 2 },
  {
    path: "nested/deeper/leaf.txt",
    mode: S_IFREG | 0o400,
    uid: 1000,
    gid: 50,
    writes: [{ offset: 0, length: 4096 }],
    blocks: 1,
  },
  {
    path: "big",
    mode: S_IFDIR | 0o750,
    uid: 1000,
    gid: 100,
    xattrs: { "user.purpose": Buffer.from("split into several B+tree blocks") },
  },
  ...Array.from(
    { length: BIG_ENTRIES },
    (_, i): Spec => ({
      path: `big/entry-${String(i).padStart(4, "0")}`,
      mode: S_IFREG | (0o600 + (i % 8) * 0o10),
      uid: 1000 + (i % 3),
      gid: 100,
      blocks: 0,
    }),
  ),
  {
    path: "orphan.tmp",
    mode: S_IFREG | 0o600,
    uid: 1000,
    gid: 100,
    writes: [{ offset: 0, length: 2 * BS }],
    blocks: 2,
    orphan: true,
  },
  { path: "journalled", mode: S_IFDIR | 0o755, uid: 0, gid: 0, blocks: 2, journal: true },
];

/** Every node in creation order: inode numbers from 1 (2 is reused once: see DOOMED). */
export const GOLDEN_NODES: readonly GoldenNode[] = specs.map((s, k) => {
  const { generation, ...rest } = s;
  const times = s.journal
    ? { birth: JOURNAL_TIME, atime: JOURNAL_TIME, mtime: JOURNAL_TIME, ctime: JOURNAL_TIME }
    : { birth: at(k, 0), atime: at(k, 1), mtime: at(k, 2), ctime: at(k, 3) };
  // The journalled mkdir and setxattr change the root's mtime and ctime.
  if (s.path === "") Object.assign(times, { mtime: JOURNAL_TIME, ctime: JOURNAL_TIME });
  return { ...rest, ino: k + 1, generation: generation ?? 1, ...times };
});

/** The root's attribute set by the journalled transaction. */
export const JOURNAL_XATTR = { name: "user.note", value: Buffer.from("set by the journal") };

/** The contents a node's writes leave (files and nothing else). */
export function contents(node: GoldenNode): Buffer {
  const writes = node.writes ?? [];
  const end = writes.reduce((n, w) => Math.max(n, w.offset + w.length), 0);
  const size = node.size ?? end;
  if (size > 1 << 20) throw new Error(`${node.path}: use pieces() for a file of ${size} bytes`);
  const b = Buffer.alloc(size);
  for (const w of writes) pattern(node.ino, w.offset, w.length).copy(b, w.offset);
  return b;
}

/** The file's size and the bytes of each write, for files too large to hold whole. */
export function pieces(node: GoldenNode): {
  size: number;
  writes: Array<{ offset: number; bytes: Buffer }>;
} {
  const writes = (node.writes ?? []).map((w) => ({
    offset: w.offset,
    bytes: pattern(node.ino, w.offset, w.length),
  }));
  const end = writes.reduce((n, w) => Math.max(n, w.offset + w.bytes.length), 0);
  return { size: node.size ?? end, writes };
}

export const dirOf = (path: string) =>
  path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "";
export const baseName = (path: string) => path.slice(path.lastIndexOf("/") + 1);
