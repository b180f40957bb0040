// shadowfs against a plain host directory: seeded random operations, by path, applied to both and
// compared after every step (outcomes, errno codes, the whole tree, contents, times, inodes).
// SEED=n repeats one sequence, STEPS=n sets its length (300).

import {
  chmodSync,
  chownSync,
  closeSync,
  mkdtempSync,
  openSync,
  readSync,
  rmSync,
  statfsSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { MemoryBlockDevice } from "../../src/cow/index.js";
import { FileSystem, ROOT } from "../../src/fs/filesystem.js";
import { check } from "../../src/fs/fsck.js";
import type { Time } from "../../src/fs/inode.js";
import {
  describeOp,
  listAll,
  type Op,
  type Outcome,
  onHost,
  onShadow,
  outcome,
  scanHost,
  scanShadow,
  type Tree,
} from "../helpers/fs-reference.js";
import { int, pick, type Rand, seeded, seededBytes, seeds, withSeed } from "../helpers/random.js";

const MiB = 2 ** 20;
const STEPS = Number(process.env.STEPS ?? 300);
const AS_ROOT = process.getuid?.() === 0;
const owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, groups: [] };
/** The host directory is on ext4 (whose block counts shadowfs matches). */
const EXT4 = statfsSync(tmpdir()).type === 0xef53;
/** Files up to this size are compared whole after every step; larger ones where written. */
const WHOLE = 256 * 1024;

let umask = 0;
const dirs: string[] = [];
beforeAll(() => {
  umask = process.umask(0); // host modes must be exactly those asked for, as in shadowfs
});
afterAll(() => {
  process.umask(umask);
});
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/**
 * A fresh host directory and shadowfs volume. With `setgid` (as root), both roots belong to
 * another group and are set-group-ID, so that what such a directory hands down is seen.
 */
async function setup(seed: number, setgid = false) {
  const root = mkdtempSync(join(tmpdir(), "shadowfs-diff-"));
  dirs.push(root);
  chmodSync(root, 0o755); // as shadowfs makes its root
  const dev = new MemoryBlockDevice(64 * MiB);
  // Directories' hash keys from the seed: names collide and order alike in every run of it.
  const dirKeys = seededBytes(seed ^ 0xd1e5, 16);
  await FileSystem.mkfs(dev, { ...owner, dirKeys });
  const fs = await FileSystem.open(dev, { dirKeys });
  if (setgid && AS_ROOT) {
    chownSync(root, owner.uid, owner.gid + 1);
    chmodSync(root, 0o2755);
    await fs.setattr(ROOT, { gid: owner.gid + 1, mode: 0o2755 });
  }
  // Blocks in use that no inode owns: superblock, journal, bitmaps and the like.
  const st = await fs.statfs();
  const fixed = st.blocks - st.blocksFree - (await ownedBlocks(fs, [ROOT]));
  return { root, dev, fs, fixed, dirKeys };
}

/** A host directory and a shadowfs volume that should hold the same tree. */
type Pair = Awaited<ReturnType<typeof setup>>;

/** 4 KiB blocks owned by inodes `inos` and by the inode table's own files. */
async function ownedBlocks(fs: FileSystem, inos: Iterable<number>): Promise<number> {
  let n = 0;
  for (const ino of inos) n += (await fs.getattr(ino)).blocks / 8;
  for (const sys of fs.context.table.systemInodes()) n += sys.blocks;
  return n;
}

// ------------------------------------------------------------------------------ generating

const NAMES = ["a", "b", "c", "d", "e", "f", "g", "ü", "x y"];
const last = (path: string) => path.slice(path.lastIndexOf("/") + 1);
const isDot = (name: string) => name === "." || name === "..";
const depth = (path: string) => (path === "" ? 0 : path.split("/").length);
const child = (dir: string, name: string) => (dir === "" ? name : `${dir}/${name}`);
/** The tree path `path` names: dots appear only as last components. */
function canonical(path: string): string {
  const parts = path.split("/");
  const end = parts.pop()!;
  if (end === "..") parts.pop();
  else if (end !== ".") parts.push(end);
  return parts.join("/");
}

interface View {
  tree: Tree;
  all: string[];
  dirs: string[];
  files: string[];
  links: string[];
  /** Names of inodes with more than one. */
  shared: string[][];
}

function view(tree: Tree): View {
  const v: View = { tree, all: [], dirs: [], files: [], links: [], shared: [] };
  const byIno = new Map<number, string[]>();
  for (const [path, e] of tree) {
    if (path !== "") v.all.push(path);
    if (e.kind === "dir") v.dirs.push(path);
    if (e.kind === "file") v.files.push(path);
    if (e.kind === "symlink") v.links.push(path);
    if (e.kind !== "dir") byIno.set(e.ino, [...(byIno.get(e.ino) ?? []), path]);
  }
  for (const names of byIno.values()) if (names.length > 1) v.shared.push(names);
  return v;
}

function name(rand: Rand): string {
  const r = rand();
  if (r < 0.02) return "n".repeat(255);
  if (r < 0.03) return "n".repeat(256); // ENAMETOOLONG
  return pick(rand, NAMES);
}

/** A name that mostly does not exist yet; sometimes under a file, a symlink or nothing. */
function fresh(rand: Rand, v: View): string {
  const r = rand();
  const shallow = v.dirs.filter((d) => depth(d) < 4);
  let dir = pick(rand, shallow);
  if (r < 0.08 && v.files.length > 0) dir = pick(rand, v.files);
  else if (r < 0.11 && v.links.length > 0) dir = pick(rand, v.links);
  else if (r < 0.15) dir = child(dir, "zz-none");
  return child(dir, name(rand));
}

/** "d/." or "d/.." under a directory other than the root (so ".." stays inside the tree). */
function dotted(rand: Rand, v: View): string | undefined {
  const inner = v.dirs.filter((d) => d !== "");
  return inner.length > 0 ? child(pick(rand, inner), rand() < 0.5 ? "." : "..") : undefined;
}

/** Mostly an existing name of `kind`; now and then any name, a fresh one or a dotted one. */
function existing(rand: Rand, v: View, kind: "file" | "dir" | "symlink" | "any"): string {
  const r = rand();
  if (r < 0.04) return dotted(rand, v) ?? fresh(rand, v);
  if (r < 0.12) return fresh(rand, v);
  const list =
    kind === "file"
      ? v.files
      : kind === "symlink"
        ? v.links
        : (kind === "dir" ? v.dirs : v.all).filter((p) => p !== "");
  if (r < 0.2 || list.length === 0) return v.all.length > 0 ? pick(rand, v.all) : fresh(rand, v);
  return pick(rand, list);
}

/** Any mode as root; otherwise one that leaves the owner in (permission checks are the kernel's). */
const fileMode = (rand: Rand) => (AS_ROOT ? int(rand, 0, 0o7777) : int(rand, 0, 0o1777) | 0o700);
/** mkdir keeps rwx and sticky only: set-uid and set-gid asked for must be dropped, as Linux does. */
const dirMode = (rand: Rand) => (AS_ROOT ? int(rand, 0, 0o7777) : int(rand, 0, 0o1777) | 0o700);

function time(rand: Rand): Time {
  const r = rand();
  const sec =
    r < 0.1
      ? int(rand, 0, 1e6)
      : r < 0.2
        ? int(rand, 2 ** 31, 2 ** 32 - 1)
        : int(rand, 1e9, 2 ** 31 - 1);
  return { sec, nsec: r < 0.05 ? 0 : int(rand, 0, 999_999_999) };
}

function target(rand: Rand): string {
  const r = rand();
  if (r < 0.03) return ""; // ENOENT
  if (r < 0.05) return "t".repeat(4096); // ENAMETOOLONG
  // Never resolvable: no test ever makes "zz-nowhere", and the walk treats every symlink as dangling.
  const base = rand() < 0.5 ? "/nonexistent-shadowfs/" : "zz-nowhere/";
  const len =
    r < 0.15 ? int(rand, 58, 61) : r < 0.35 ? int(rand, 62, 4095) : int(rand, base.length + 1, 57);
  const alphabet = "abcxyz/._-é";
  let s = base;
  while (s.length < len) s += alphabet[int(rand, 0, alphabet.length - 1)];
  return s.slice(0, len);
}

/** A rename source and target chosen to reach each of rename's cases. */
function rename(rand: Rand, v: View): Op {
  const noReplace = rand() < 0.25;
  const r = rand();
  if (r < 0.05 && v.shared.length > 0) {
    const names = pick(rand, v.shared); // two names of one file: nothing to do
    return { kind: "rename", from: pick(rand, names), to: pick(rand, names), noReplace };
  }
  const from = existing(rand, v, rand() < 0.5 ? "dir" : "any");
  const src = v.tree.get(from);
  const kind = src?.kind === "dir" ? "dir" : "file";
  const below = v.all.filter((p) => p.startsWith(`${from}/`));
  const above = v.all.filter((p) => from.startsWith(`${p}/`));
  const s = rand();
  let to: string;
  if (s < 0.3)
    to =
      rand() < 0.3
        ? child(from.slice(0, Math.max(0, from.lastIndexOf("/"))), name(rand))
        : fresh(rand, v);
  else if (s < 0.5) to = existing(rand, v, kind);
  else if (s < 0.6) to = existing(rand, v, kind === "dir" ? "file" : "dir");
  else if (s < 0.7 && src?.kind === "dir")
    to = child(pick(rand, [from, ...below]), name(rand)); // EINVAL
  else if (s < 0.75 && above.length > 0)
    to = pick(rand, above); // onto an ancestor
  else if (s < 0.8) to = from;
  else if (s < 0.84) to = dotted(rand, v) ?? from;
  else to = existing(rand, v, "any");
  return { kind: "rename", from, to, noReplace };
}

const WEIGHTS = {
  create: 12,
  mkdir: 8,
  symlink: 5,
  write: 15,
  truncate: 7,
  rename: 14,
  link: 6,
  unlink: 7,
  rmdir: 5,
  readlink: 3,
  read: 4,
  readdir: 2,
  chmod: 5,
  utimens: 5,
} satisfies Record<Op["kind"], number>;

/** An offset or size: mostly near `size`, sometimes far past it (sparse), rarely 1 TiB out. */
function far(rand: Rand, size: number): number {
  const r = rand();
  if (r < 0.6) return int(rand, 0, size + 4096);
  if (r < 0.85) return int(rand, 0, size + MiB);
  return r < 0.98 ? int(rand, 0, 64 * MiB) : int(rand, 0, 2 ** 40);
}

function generate(rand: Rand, v: View): Op {
  const crowded = v.all.length > 60; // then fewer creations and more removals
  const weight = (k: Op["kind"]) => {
    const w = WEIGHTS[k];
    if (!crowded) return w;
    return k === "create" || k === "mkdir" || k === "symlink"
      ? w / 4
      : k === "unlink" || k === "rmdir"
        ? w * 2
        : w;
  };
  const kinds = Object.keys(WEIGHTS) as Array<Op["kind"]>;
  let x = rand() * kinds.reduce((s, k) => s + weight(k), 0);
  let kind: Op["kind"] = "create";
  for (const k of kinds) {
    x -= weight(k);
    kind = k;
    if (x < 0) break;
  }
  const newName = () => (rand() < 0.9 ? fresh(rand, v) : existing(rand, v, "any"));
  switch (kind) {
    case "create": {
      const via = rand() < 0.5 ? "create" : "mknod";
      return { kind, path: newName(), mode: fileMode(rand), via };
    }
    case "mkdir":
      return { kind, path: newName(), mode: dirMode(rand) };
    case "symlink": {
      const to = target(rand);
      // The kernel refuses an empty or too long target before it walks the path, shadowfs only
      // after the walk this test does for it: a bad target gets a directory that is there.
      const bad = to.length === 0 || Buffer.byteLength(to) > 4095;
      return { kind, path: bad ? child(pick(rand, v.dirs), name(rand)) : newName(), target: to };
    }
    case "write": {
      const path = existing(rand, v, "file");
      const offset = far(rand, v.tree.get(path)?.size ?? 0);
      const length = rand() < 0.7 ? int(rand, 1, 8192) : int(rand, 1, 65536);
      return { kind, path, offset, length, seed: int(rand, 1, 2 ** 31) };
    }
    case "truncate": {
      const path = existing(rand, v, "file");
      const size = v.tree.get(path)?.size ?? 0;
      return { kind, path, size: rand() < 0.35 ? int(rand, 0, size) : far(rand, size) };
    }
    case "rename":
      return rename(rand, v);
    case "link": {
      const r = rand();
      const from = existing(
        rand,
        v,
        r < 0.6 ? "file" : r < 0.75 ? "symlink" : r < 0.9 ? "dir" : "any",
      );
      const s = rand();
      const to =
        s < 0.75 ? fresh(rand, v) : s < 0.95 ? existing(rand, v, "any") : (dotted(rand, v) ?? from);
      return { kind, from, to };
    }
    case "unlink":
      return { kind, path: existing(rand, v, rand() < 0.8 ? "file" : "any") };
    case "rmdir":
      return { kind, path: existing(rand, v, rand() < 0.8 ? "dir" : "any") };
    case "readlink":
      return { kind, path: existing(rand, v, rand() < 0.7 ? "symlink" : "any") };
    case "read":
      return {
        kind,
        path: existing(rand, v, "file"),
        offset: int(rand, 0, 300_000),
        length: int(rand, 0, 70_000),
      };
    case "readdir":
      return { kind, path: existing(rand, v, "dir") };
    case "chmod":
      return { kind, path: existing(rand, v, "any"), mode: fileMode(rand) };
    case "utimens":
      return { kind, path: existing(rand, v, "any"), atime: time(rand), mtime: time(rand) };
  }
}

// ------------------------------------------------------------------------------ comparing

/**
 * Codes Linux's VFS returns before any filesystem is called (through FUSE shadowfs never sees
 * these calls) where shadowfs answers another code POSIX also allows for the same call.
 */
function alsoAccepted(op: Op, hostCode: string, before: Tree): string[] {
  if (op.kind === "rename") {
    // A final "." or "..": Linux EBUSY (EEXIST under RENAME_NOREPLACE), POSIX EINVAL.
    const dots = isDot(last(op.from)) || isDot(last(op.to));
    if (dots && (hostCode === "EBUSY" || hostCode === "EEXIST")) return ["EINVAL"];
    // Onto an ancestor of the source: Linux ENOTEMPTY, before it compares the two types.
    if (hostCode === "ENOTEMPTY" && op.from.startsWith(`${op.to}/`)) return ["EISDIR"];
  }
  // A directory linked to a name that exists or is too long: Linux looks the new name up (EEXIST,
  // ENAMETOOLONG) before it asks the filesystem to link; shadowfs refuses the directory first.
  if (op.kind === "link" && (hostCode === "EEXIST" || hostCode === "ENAMETOOLONG"))
    return before.get(canonical(op.from))?.kind === "dir" ? ["EPERM"] : [];
  return [];
}

function compareOutcomes(op: Op, h: Outcome, s: Outcome, before: Tree): string[] {
  if (h.ok && s.ok) return h.value === s.value ? [] : [`host read ${h.value}, shadowfs ${s.value}`];
  if (h.ok && !s.ok) return [`host succeeded, shadowfs failed: ${s.message}`];
  if (!h.ok && s.ok) return [`host failed with ${h.code}, shadowfs succeeded`];
  if (!h.ok && !s.ok && s.code !== h.code && !alsoAccepted(op, h.code, before).includes(s.code))
    return [`host failed with ${h.code}, shadowfs with ${s.message}`];
  return [];
}

/**
 * What ext4 and shadowfs agree on by design, name by name (directory sizes differ). A directory
 * has 2 + subdirectories links, counted from the host tree so that any host filesystem will do;
 * block counts are compared only on ext4, whose rules shadowfs follows (a symlink shorter than 60
 * bytes lives in its inode).
 */
function compareTrees(h: Tree, s: Tree): string[] {
  const out: string[] = [];
  for (const p of h.keys()) if (!s.has(p)) out.push(`"${p}" missing in shadowfs`);
  for (const p of s.keys()) if (!h.has(p)) out.push(`"${p}" in shadowfs only`);
  const subdirs = new Map<string, number>();
  for (const [p, a] of h) {
    if (p === "" || a.kind !== "dir") continue;
    const up = p.slice(0, Math.max(0, p.lastIndexOf("/")));
    subdirs.set(up, (subdirs.get(up) ?? 0) + 1);
  }
  const h2s = new Map<number, number>();
  const s2h = new Map<number, number>();
  for (const [p, a] of h) {
    const b = s.get(p);
    if (!b) continue;
    const diff = (what: string, x: unknown, y: unknown) => {
      if (x !== y) out.push(`"${p}" ${what}: host ${String(x)}, shadowfs ${String(y)}`);
    };
    diff("type", a.kind, b.kind);
    diff("permissions", `0o${a.perm.toString(8)}`, `0o${b.perm.toString(8)}`);
    diff("nlink", a.kind === "dir" ? 2 + (subdirs.get(p) ?? 0) : a.nlink, b.nlink);
    diff("uid", a.uid, b.uid);
    diff("gid", a.gid, b.gid);
    if (a.kind !== "dir") diff("size", a.size, b.size);
    if (a.kind === "symlink")
      diff("symlink target", a.target?.toString("latin1"), b.target?.toString("latin1"));
    if (EXT4 && a.kind === "file") diff("has blocks", a.blocks > 0, b.blocks > 0);
    if (EXT4 && a.kind === "symlink") diff("symlink blocks (fast or not)", a.blocks, b.blocks);
    if ((h2s.get(a.ino) ?? b.ino) !== b.ino || (s2h.get(b.ino) ?? a.ino) !== a.ino)
      out.push(`"${p}" is shadowfs inode ${b.ino}: hard links differ from the host's`);
    h2s.set(a.ino, b.ino);
    s2h.set(b.ino, a.ino);
  }
  return out;
}

/** The times and inode number each host inode had at the last step. */
interface Seen {
  ino: number;
  hostM: bigint;
  hostC: bigint;
  m: bigint;
  c: bigint;
  /** An mtime set by utimens and still in place on the host. */
  pinned: bigint | undefined;
  /** The host moved mtime where shadowfs may keep it: the two differ until shadowfs moves it. */
  lax: boolean;
}

const abs = (x: bigint) => (x < 0n ? -x : x);
const ns = (t: Time) => BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec);
const US = 2_000n; // Node passes utimes a double: the host keeps about a microsecond
const CLOCK = 60_000_000_000n; // both clocks are the wall clock, within a minute

/**
 * Times and inode identity against the previous step; returns the state for the next one.
 * `before` is the host tree before `op`, which succeeded on the host if `ok`.
 */
function compareTimes(
  h: Tree,
  s: Tree,
  before: Tree,
  seen: Map<number, Seen>,
  op: Op,
  ok: boolean,
) {
  const out: string[] = [];
  const next = new Map<number, Seen>();
  const named = "path" in op ? h.get(canonical(op.path))?.ino : undefined;
  const set = ok && op.kind === "utimens" ? named : undefined;
  // truncate(2) to the size a file has: ext4 sets mtime, POSIX asks it only when the size changes.
  const same =
    ok && op.kind === "truncate" && before.get(canonical(op.path))?.size === op.size
      ? named
      : undefined;
  for (const [p, a] of h) {
    const b = s.get(p);
    if (!b || next.has(a.ino)) continue;
    const prev = seen.get(a.ino);
    const say = (what: string) => out.push(`"${p}" (shadowfs inode ${b.ino}) ${what}`);
    let pinned = prev?.pinned;
    let lax = (prev?.lax ?? false) && b.mtime === prev?.m;
    if (set === a.ino && op.kind === "utimens") {
      pinned = ns(op.mtime);
      lax = false;
      if (b.atime !== ns(op.atime)) say(`atime ${b.atime}, set to ${ns(op.atime)}`);
      if (abs(a.atime - ns(op.atime)) > US) say(`host atime ${a.atime}, set to ${ns(op.atime)}`);
    } else if (pinned !== undefined && abs(a.mtime - pinned) > US) pinned = undefined;
    if (same === a.ino && b.mtime === prev?.m) lax = true;
    if (pinned !== undefined) {
      if (b.mtime !== pinned)
        say(`mtime ${b.mtime}, but it was set to ${pinned} (the host kept it)`);
    } else if (!lax && abs(b.mtime - a.mtime) > CLOCK)
      say(`mtime ${b.mtime}, the host's ${a.mtime}`);
    if (abs(b.ctime - a.ctime) > CLOCK) say(`ctime ${b.ctime} far from the host's ${a.ctime}`);
    if (prev) {
      if (prev.ino !== b.ino) say(`was inode ${prev.ino} at the last step`);
      if (b.ctime < prev.c) say(`ctime went back from ${prev.c} to ${b.ctime}`);
      if (a.ctime !== prev.hostC && b.ctime === prev.c) say("ctime kept where the host's changed");
      if (pinned === undefined && prev.pinned === undefined) {
        if (b.mtime < prev.m && !prev.lax) say(`mtime went back from ${prev.m} to ${b.mtime}`);
        if (a.mtime !== prev.hostM && b.mtime === prev.m && same !== a.ino)
          say("mtime kept where the host's changed");
      }
    }
    next.set(a.ino, {
      ino: b.ino,
      hostM: a.mtime,
      hostC: a.ctime,
      m: b.mtime,
      c: b.ctime,
      pinned,
      lax,
    });
  }
  return { next, problems: out };
}

/** Parts of files written since they were last cut: where their bytes may be non-zero. */
type Written = Map<number, Array<[number, number]>>;

/** Contents of every file; whole when small, else the written parts, both ends and two probes. */
async function compareContents({ root, fs }: Pair, h: Tree, s: Tree, written: Written, rand: Rand) {
  const out: string[] = [];
  const done = new Set<number>();
  for (const [p, a] of h) {
    const b = s.get(p);
    if (a.kind !== "file" || b?.kind !== "file" || a.size !== b.size || done.has(a.ino)) continue;
    done.add(a.ino);
    const size = a.size;
    let spans: Array<[number, number]> = [[0, size]];
    if (size > WHOLE) {
      const probe = () => int(rand, 0, size - 4096);
      spans = [[0, 4096], [size - 4096, size], ...(written.get(a.ino) ?? [])];
      for (const at of [probe(), probe()]) spans.push([at, at + 4096]);
    }
    const file = openSync(`${root}/${p}`, "r");
    try {
      for (const [lo, hi0] of spans) {
        const hi = Math.min(hi0, size);
        if (hi <= lo) continue;
        const want = Buffer.alloc(hi - lo);
        readSync(file, want, 0, hi - lo, lo);
        const got = await fs.read(b.ino, lo, hi - lo + (hi === size ? 100 : 0));
        if (!got.equals(want)) {
          let at = 0;
          while (at < want.length && got[at] === want[at]) at++;
          out.push(
            `"${p}" bytes [${lo}, ${hi}) differ from offset ${lo + at} (${got.length} bytes read)`,
          );
          break;
        }
      }
    } finally {
      closeSync(file);
    }
  }
  return out;
}

async function compareStatfs({ fs, fixed }: Pair, s: Tree): Promise<string[]> {
  const out: string[] = [];
  const st = await fs.statfs();
  if (!(st.blocksFree >= 0 && st.blocksFree <= st.blocks))
    out.push(`statfs: ${st.blocksFree} of ${st.blocks} blocks free`);
  if (!(st.filesFree >= 0 && st.filesFree <= st.files))
    out.push(`statfs: ${st.filesFree} of ${st.files} inodes free`);
  if (st.blockSize !== 4096 || st.nameMax !== 255) out.push(`statfs: ${JSON.stringify(st)}`);
  const inos = new Set([...s.values()].map((e) => e.ino));
  if (st.files - st.filesFree !== inos.size)
    out.push(`statfs: ${st.files - st.filesFree} inodes in use, the tree has ${inos.size}`);
  const owned = fixed + (await ownedBlocks(fs, inos));
  if (st.blocks - st.blocksFree !== owned)
    out.push(`statfs: ${st.blocks - st.blocksFree} blocks in use, inodes own ${owned}`);
  return out;
}

/** Removes everything below the root on both sides, deepest first, as ordinary steps. */
function teardown(tree: Tree): Op[] {
  const paths = [...tree.keys()].filter((p) => p !== "").sort((x, y) => depth(y) - depth(x));
  return paths.map((path) =>
    tree.get(path)!.kind === "dir" ? { kind: "rmdir", path } : { kind: "unlink", path },
  );
}

/** Keeps `written` up to date after `op` succeeded on the host (`after`: the host tree then). */
function track(written: Written, op: Op, after: Tree): void {
  if (op.kind !== "write" && op.kind !== "truncate") return;
  const ino = after.get(canonical(op.path))!.ino;
  const spans = written.get(ino) ?? [];
  if (op.kind === "write") spans.push([op.offset, op.offset + op.length]);
  else for (const s of spans) s[1] = Math.min(s[1], op.size);
  written.set(
    ino,
    spans.filter(([lo, hi]) => lo < hi),
  );
}

// ------------------------------------------------------------------------------ tests

/** Applies `op` to the host, then to shadowfs. */
async function both(pair: Pair, op: Op): Promise<{ h: Outcome; s: Outcome }> {
  const h = await outcome(() => onHost(pair.root, op));
  const s = await outcome(() => onShadow(pair.fs, op, owner), true);
  return { h, s };
}

describe("shadowfs against a host directory", () => {
  it.each(seeds(6))("agrees after every step of a random sequence: seed %i", (seed) =>
    withSeed(seed, async (rand) => {
      const pair = await setup(seed, rand() < 0.5);
      const probes = seeded(seed ^ 0x5eed); // apart from `rand`: checks never change the sequence
      const log: string[] = [];
      const written: Written = new Map();
      let seen = new Map<number, Seen>();
      let before = scanHost(pair.root);
      let plan: Op[] = [];
      for (let step = 0; ; step++) {
        if (step === STEPS) plan = teardown(before); // then everything goes, step by step
        if (step >= STEPS + plan.length) break;
        const op = step < STEPS ? generate(rand, view(before)) : plan[step - STEPS]!;
        log.push(`${step}: ${describeOp(op)}`);
        const { h, s } = await both(pair, op);
        const problems = compareOutcomes(op, h, s, before);
        const reopen = rand() < 0.02;
        let after = before;
        let next = seen;
        try {
          if (reopen) {
            log.push(`${step}: (shadowfs closed and opened again: nothing may change)`);
            await pair.fs.close();
            pair.fs = await FileSystem.open(pair.dev, { dirKeys: pair.dirKeys });
          }
          after = scanHost(pair.root);
          if (h.ok) track(written, op, after);
          const shadow = await scanShadow(pair.fs, 16);
          problems.push(...shadow.problems, ...compareTrees(after, shadow.tree));
          const times = compareTimes(after, shadow.tree, before, seen, op, h.ok);
          problems.push(...times.problems);
          next = times.next;
          problems.push(...(await compareContents(pair, after, shadow.tree, written, probes)));
          problems.push(...(await compareStatfs(pair, shadow.tree)));
          if (reopen || step % 10 === 9 || step === STEPS + plan.length - 1)
            problems.push(...(await check(pair.fs)).problems.map((p) => `fsck: ${p}`));
        } catch (e) {
          problems.push(`a check threw: ${(e as Error).stack ?? String(e)}`);
        }
        if (problems.length > 0) {
          const outcomes = `host: ${h.ok ? "ok" : h.code}, shadowfs: ${s.ok ? "ok" : s.code}`;
          expect.fail(
            `step ${step}: ${describeOp(op)} (${outcomes})\n  ${problems.slice(0, 12).join("\n  ")}` +
              `\nlast steps:\n  ${log.slice(-15).join("\n  ")}`,
          );
        }
        seen = next;
        before = after;
      }
      expect([...before.keys()]).toEqual([""]);
    }),
  );

  it("agrees on a directory of 2,000 names after renaming half and deleting a quarter", async () => {
    const seed = seeds(1)[0]!;
    await withSeed(seed, async (rand) => {
      const pair = await setup(seed);
      const apply = async (op: Op) => {
        const { h, s } = await both(pair, op);
        expect(compareOutcomes(op, h, s, new Map()), describeOp(op)).toEqual([]);
      };
      const letters = "abcdefghijklmnopqrstuvwxyz0123456789-_.";
      const word = (i: number) => {
        let w = `${i}-`;
        const len = rand() < 0.1 ? 255 : int(rand, 3, 40);
        while (w.length < len) w += letters[int(rand, 0, letters.length - 1)];
        return w;
      };
      await apply({ kind: "mkdir", path: "big", mode: 0o755 });
      const names = new Set<string>();
      for (let i = 0; i < 2000; i++) {
        const n = word(i);
        names.add(n);
        await apply({ kind: "create", path: `big/${n}`, mode: 0o644, via: "create" });
        const length = int(rand, 1, 300);
        if (i % 4 === 0)
          await apply({ kind: "write", path: `big/${n}`, offset: 0, length, seed: i });
      }
      // Half renamed: most to new names, some onto names that exist (which replaces them).
      for (let i = 0; i < 1000; i++) {
        const list = [...names];
        const from = pick(rand, list);
        const to = rand() < 0.15 ? pick(rand, list) : word(2000 + i);
        await apply({ kind: "rename", from: `big/${from}`, to: `big/${to}`, noReplace: false });
        names.delete(from);
        names.add(to);
      }
      // A quarter deleted while the directory is listed in pages: a name there throughout is
      // listed exactly once, a deleted one at most once.
      const doomed = [...names].filter(() => rand() < 0.25);
      const big = (await pair.fs.lookup(ROOT, "big")).ino;
      const count = new Map<string, number>();
      for (let cookie = 0n; ; ) {
        const page = await pair.fs.readdir(big, cookie, 50);
        if (page.length === 0) break;
        for (const e of page) count.set(e.name.toString(), (count.get(e.name.toString()) ?? 0) + 1);
        cookie = page[page.length - 1]!.cookie;
        for (const n of doomed.splice(0, 15)) {
          await apply({ kind: "unlink", path: `big/${n}` });
          names.delete(n);
        }
      }
      for (const n of doomed) {
        await apply({ kind: "unlink", path: `big/${n}` });
        names.delete(n);
      }
      for (const n of names) expect(count.get(n), `"${n}" listed`).toBe(1);
      for (const [n, c] of count) expect(c, `"${n}" listed`).toBeLessThanOrEqual(1);

      const after = scanHost(pair.root);
      const shadow = await scanShadow(pair.fs, 37);
      expect(shadow.problems).toEqual([]);
      expect(compareTrees(after, shadow.tree)).toEqual([]);
      expect(after.size).toBe(names.size + 2);
      const listed = (await listAll(pair.fs, big, 1000)).map((e) => e.name.toString());
      expect(listed.sort()).toEqual([".", "..", ...names].sort());
      expect(await compareContents(pair, after, shadow.tree, new Map(), seeded(seed))).toEqual([]);
      expect(await compareStatfs(pair, shadow.tree)).toEqual([]);
      expect((await check(pair.fs)).problems).toEqual([]);
    });
  });
});
