// The two sides of the differential filesystem test: one operation, named by path, applied to a
// plain host directory and to shadowfs, and whole-tree snapshots of both. It asserts nothing.

import {
  chmodSync,
  closeSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  readSync,
  renameSync,
  rmdirSync,
  statSync,
  symlinkSync,
  truncateSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { FsError } from "../../src/errors.js";
import { type Attr, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from "../../src/fs/attr.js";
import { type Cred, type DirEntry, type FileSystem, ROOT } from "../../src/fs/filesystem.js";
import type { Time } from "../../src/fs/inode.js";

/** One step of a sequence. Paths are relative to the tree's root, "/"-separated, never "". */
export type Op =
  | { kind: "create"; path: string; mode: number; via: "create" | "mknod" }
  | { kind: "write"; path: string; offset: number; length: number; seed: number }
  | { kind: "truncate"; path: string; size: number }
  | { kind: "rename"; from: string; to: string; noReplace: boolean }
  | { kind: "link"; from: string; to: string }
  | { kind: "unlink"; path: string }
  | { kind: "mkdir"; path: string; mode: number }
  | { kind: "rmdir"; path: string }
  | { kind: "symlink"; path: string; target: string }
  | { kind: "readlink"; path: string }
  | { kind: "read"; path: string; offset: number; length: number }
  | { kind: "readdir"; path: string }
  | { kind: "chmod"; path: string; mode: number }
  | { kind: "utimens"; path: string; atime: Time; mtime: Time };

/** What an operation did: a value to compare (reads), or the errno it failed with. */
export type Outcome = { ok: true; value: string } | { ok: false; code: string; message: string };

/** Runs one side of a step; with `fsErrorsOnly` (shadowfs) an error other than FsError has no code. */
export async function outcome(
  run: () => Promise<string | undefined>,
  fsErrorsOnly = false,
): Promise<Outcome> {
  try {
    return { ok: true, value: (await run()) ?? "" };
  } catch (e) {
    const err = e as Error & { code?: unknown };
    const coded = typeof err.code === "string" && (!fsErrorsOnly || e instanceof FsError);
    const code = coded ? String(err.code) : `${err.name} (not an FsError)`;
    return { ok: false, code, message: coded ? err.message : (err.stack ?? String(err)) };
  }
}

/** The bytes a write step writes: a pattern that differs at every offset and from seed to seed. */
export function pattern(seed: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

export const describeOp = (op: Op): string => {
  const { kind, ...rest } = op;
  const fields = Object.entries(rest).map(([k, v]) => {
    const s =
      typeof v === "string"
        ? JSON.stringify(v.length > 40 ? `${v.slice(0, 12)}…(${v.length})` : v)
        : JSON.stringify(v);
    return `${k}=${k === "mode" ? `0o${(v as number).toString(8)}` : s}`;
  });
  return `${kind} ${fields.join(" ")}`;
};

const split = (path: string) => {
  const i = path.lastIndexOf("/");
  return { dir: i < 0 ? "" : path.slice(0, i), name: path.slice(i + 1) };
};
const isDot = (name: string) => name === "." || name === "..";
const digest = (b: Buffer) => `${b.length} bytes ${b.toString("base64").slice(0, 24)}…`;
const hostErr = (code: string, what: string) =>
  Object.assign(new Error(`${code}: ${what}`), { code });

// ------------------------------------------------------------------------------------- host

/**
 * Applies `op` to the host directory `root` (synchronous calls: they are quicker than a trip
 * through libuv's thread pool). Paths are concatenated, never normalised: "d/.." must reach the
 * kernel as written. Symlinks are followed only where the syscall follows them.
 */
export async function onHost(root: string, op: Op): Promise<string | undefined> {
  const p = (rel: string) => `${root}/${rel}`;
  switch (op.kind) {
    case "create":
      closeSync(openSync(p(op.path), "wx", op.mode));
      return;
    case "write": {
      const fd = openSync(p(op.path), "r+");
      try {
        writeSync(fd, pattern(op.seed, op.length), 0, op.length, op.offset);
      } finally {
        closeSync(fd);
      }
      return;
    }
    case "truncate":
      truncateSync(p(op.path), op.size);
      return;
    case "rename":
      if (op.noReplace) hostNoReplace(root, op.from, op.to);
      renameSync(p(op.from), p(op.to));
      return;
    case "link":
      linkSync(p(op.from), p(op.to));
      return;
    case "unlink":
      unlinkSync(p(op.path));
      return;
    case "mkdir":
      mkdirSync(p(op.path), { mode: op.mode });
      return;
    case "rmdir":
      rmdirSync(p(op.path));
      return;
    case "symlink":
      symlinkSync(op.target, p(op.path));
      return;
    case "readlink":
      return readlinkSync(p(op.path), { encoding: "buffer" }).toString("latin1");
    case "read": {
      const fd = openSync(p(op.path), "r");
      try {
        const b = Buffer.alloc(op.length);
        return digest(b.subarray(0, readSync(fd, b, 0, op.length, op.offset)));
      } finally {
        closeSync(fd);
      }
    }
    case "readdir":
      return readdirSync(p(op.path)).sort().join("/");
    case "chmod":
      chmodSync(p(op.path), op.mode);
      return;
    case "utimens": {
      const s = (t: Time) => t.sec + t.nsec / 1e9;
      lutimesSync(p(op.path), s(op.atime), s(op.mtime));
      return;
    }
  }
}

/**
 * The checks renameat2(RENAME_NOREPLACE) makes before it renames, in the kernel's order (Node has
 * no renameat2): both parents walked, "." and ".." refused, the source looked up, then EEXIST.
 */
function hostNoReplace(root: string, from: string, to: string): void {
  const a = split(from);
  const b = split(to);
  statSync(`${root}/${a.dir}/`);
  statSync(`${root}/${b.dir}/`);
  if (isDot(a.name)) throw hostErr("EBUSY", from);
  if (isDot(b.name)) throw hostErr("EEXIST", to);
  lstatSync(`${root}/${from}`);
  if (lstatSync(`${root}/${to}`, { throwIfNoEntry: false })) throw hostErr("EEXIST", to);
}

// ---------------------------------------------------------------------------------- shadowfs

/**
 * Walks the directories of `path` from the root as the kernel's path walk would, and returns
 * the inode that should hold its last name. Every symlink the tests make dangles, so a symlink
 * met on the way is ENOENT. With `mustBeDir` the walk itself refuses a parent that is no
 * directory (as the kernel does before a rename or link); without, shadowfs is left to refuse it.
 */
async function parentOf(fs: FileSystem, path: string, mustBeDir = false) {
  const parts = path.split("/");
  const name = parts.pop()!;
  let dir = ROOT;
  let mode = S_IFDIR;
  for (const part of parts) {
    const a = await fs.lookup(dir, part);
    if ((a.mode & S_IFMT) === S_IFLNK) throw new FsError("ENOENT", `${part}: a dangling symlink`);
    dir = a.ino;
    mode = a.mode;
  }
  if (mustBeDir && (mode & S_IFMT) !== S_IFDIR) throw new FsError("ENOTDIR", `${path}: parent`);
  return { dir, name };
}

/** The inode `path` names; `follow`: a symlink there is followed (and dangles: ENOENT). */
async function inodeOf(fs: FileSystem, path: string, follow: boolean): Promise<Attr> {
  const { dir, name } = await parentOf(fs, path);
  const a = await fs.lookup(dir, name);
  if (follow && (a.mode & S_IFMT) === S_IFLNK) throw new FsError("ENOENT", `${path}: dangling`);
  return a;
}

/** Applies `op` to shadowfs through its inode API, resolving paths like the FUSE edge would. */
export async function onShadow(fs: FileSystem, op: Op, owner: Cred): Promise<string | undefined> {
  switch (op.kind) {
    case "create": {
      const { dir, name } = await parentOf(fs, op.path);
      if (op.via === "create") await fs.create(dir, name, op.mode, owner);
      else await fs.mknod(dir, name, S_IFREG | op.mode, 0, owner);
      return;
    }
    case "write": {
      const a = await inodeOf(fs, op.path, true);
      const n = await fs.write(a.ino, op.offset, pattern(op.seed, op.length));
      if (n !== op.length) throw new Error(`write returned ${n}, not ${op.length}`);
      return;
    }
    case "truncate":
      await fs.setattr((await inodeOf(fs, op.path, true)).ino, { size: op.size });
      return;
    case "rename": {
      const a = await parentOf(fs, op.from, true);
      const b = await parentOf(fs, op.to, true);
      await fs.rename(a.dir, a.name, b.dir, b.name, { noReplace: op.noReplace });
      return;
    }
    case "link": {
      const a = await inodeOf(fs, op.from, false);
      const b = await parentOf(fs, op.to, true);
      await fs.link(a.ino, b.dir, b.name);
      return;
    }
    case "unlink": {
      const { dir, name } = await parentOf(fs, op.path);
      await fs.unlink(dir, name);
      return;
    }
    case "mkdir": {
      const { dir, name } = await parentOf(fs, op.path);
      await fs.mkdir(dir, name, op.mode, owner);
      return;
    }
    case "rmdir": {
      const { dir, name } = await parentOf(fs, op.path);
      await fs.rmdir(dir, name);
      return;
    }
    case "symlink": {
      const { dir, name } = await parentOf(fs, op.path);
      await fs.symlink(dir, name, op.target, owner);
      return;
    }
    case "readlink":
      return (await fs.readlink((await inodeOf(fs, op.path, false)).ino)).toString("latin1");
    case "read":
      return digest(await fs.read((await inodeOf(fs, op.path, true)).ino, op.offset, op.length));
    case "readdir": {
      const { ino } = await inodeOf(fs, op.path, true);
      const names: string[] = [];
      for (const e of await listAll(fs, ino, 64))
        if (!isDot(e.name.toString())) names.push(e.name.toString());
      return names.sort().join("/");
    }
    case "chmod":
      await fs.setattr((await inodeOf(fs, op.path, true)).ino, { mode: op.mode });
      return;
    case "utimens":
      await fs.setattr((await inodeOf(fs, op.path, false)).ino, {
        atime: op.atime,
        mtime: op.mtime,
      });
      return;
  }
}

/** Every entry of directory `ino`, "." and ".." included, a page of `page` at a time. */
export async function listAll(fs: FileSystem, ino: number, page: number): Promise<DirEntry[]> {
  const out: DirEntry[] = [];
  for (let cookie = 0n; ; ) {
    const got = await fs.readdir(ino, cookie, page);
    if (got.length === 0) return out;
    if (got.length > page) throw new Error(`readdir gave ${got.length} entries, asked for ${page}`);
    out.push(...got);
    cookie = got[got.length - 1]!.cookie;
  }
}

// ---------------------------------------------------------------------------------- snapshots

export type Kind = "dir" | "file" | "symlink" | "other";

/** One name in a tree, as `lstat` sees it. Times in nanoseconds. */
export interface Entry {
  kind: Kind;
  ino: number;
  /** Permission bits (mode & 0o7777). */
  perm: number;
  nlink: number;
  size: number;
  /** 512-byte units. */
  blocks: number;
  uid: number;
  gid: number;
  atime: bigint;
  mtime: bigint;
  ctime: bigint;
  target?: Buffer;
}

/** Path → entry; the root is "". */
export type Tree = Map<string, Entry>;

const kindOf = (mode: number): Kind => {
  const t = mode & S_IFMT;
  return t === S_IFDIR ? "dir" : t === S_IFREG ? "file" : t === S_IFLNK ? "symlink" : "other";
};
const ns = (t: Time) => BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec);
const join = (dir: string, name: string) => (dir === "" ? name : `${dir}/${name}`);

/** The host tree under `root` (synchronous calls: a scan after every step must be quick). */
export function scanHost(root: string): Tree {
  const tree: Tree = new Map();
  const visit = (rel: string): void => {
    const abs = `${root}/${rel}`;
    const st = lstatSync(abs, { bigint: true });
    const e: Entry = {
      kind: kindOf(Number(st.mode)),
      ino: Number(st.ino),
      perm: Number(st.mode) & 0o7777,
      nlink: Number(st.nlink),
      size: Number(st.size),
      blocks: Number(st.blocks),
      uid: Number(st.uid),
      gid: Number(st.gid),
      atime: st.atimeNs,
      mtime: st.mtimeNs,
      ctime: st.ctimeNs,
    };
    if (e.kind === "symlink") e.target = readlinkSync(abs, { encoding: "buffer" });
    tree.set(rel, e);
    if (e.kind === "dir") for (const n of readdirSync(abs)) visit(join(rel, n));
  };
  visit("");
  return tree;
}

/**
 * Walks shadowfs from the root with `readdir` pages of `page` entries and returns the tree with
 * what is wrong inside shadowfs alone: an entry `lookup` or `getattr` disagrees with, a name
 * listed twice, "." or ".." pointing elsewhere, a d_type that is not the inode's type.
 */
export async function scanShadow(
  fs: FileSystem,
  page: number,
): Promise<{ tree: Tree; problems: string[] }> {
  const tree: Tree = new Map();
  const problems: string[] = [];
  const entryOf = async (a: Attr): Promise<Entry> => {
    const e: Entry = {
      kind: kindOf(a.mode),
      ino: a.ino,
      perm: a.mode & 0o7777,
      nlink: a.nlink,
      size: a.size,
      blocks: a.blocks,
      uid: a.uid,
      gid: a.gid,
      atime: ns(a.atime),
      mtime: ns(a.mtime),
      ctime: ns(a.ctime),
    };
    if (e.kind === "symlink") e.target = await fs.readlink(a.ino);
    return e;
  };
  const visit = async (rel: string, a: Attr, parent: number): Promise<void> => {
    tree.set(rel, await entryOf(a));
    if (kindOf(a.mode) !== "dir") return;
    const seen = new Set<string>();
    for (const d of await listAll(fs, a.ino, page)) {
      const name = d.name.toString();
      const path = join(rel, name);
      if (seen.has(name)) problems.push(`readdir of "${rel}" lists "${name}" twice`);
      seen.add(name);
      if (name === "." || name === "..") {
        const want = name === "." ? a.ino : parent;
        if (d.ino !== want) problems.push(`"${path}" is inode ${d.ino} in readdir, not ${want}`);
        if (d.type !== S_IFDIR >> 12) problems.push(`"${path}" has d_type ${d.type}`);
        continue;
      }
      const looked = await fs.lookup(a.ino, d.name);
      const got = await fs.getattr(d.ino);
      if (looked.ino !== d.ino)
        problems.push(`"${path}": readdir says inode ${d.ino}, lookup ${looked.ino}`);
      if (JSON.stringify(got) !== JSON.stringify(looked))
        problems.push(
          `"${path}": getattr ${JSON.stringify(got)} != lookup ${JSON.stringify(looked)}`,
        );
      if (d.type !== (looked.mode & S_IFMT) >> 12)
        problems.push(`"${path}": d_type ${d.type}, mode 0o${looked.mode.toString(8)}`);
      await visit(path, looked, a.ino);
    }
  };
  await visit("", await fs.getattr(ROOT), ROOT);
  return { tree, problems };
}
