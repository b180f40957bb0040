// Permissions and ownership, differential: one table of operations by the owner, a group member,
// another user and root, run on a plain ext4 directory by real processes (setpriv) and on the
// filesystem through its API with the same Creds; every errno and the final tree must match.

import { spawnSync } from "node:child_process";
import * as nfs from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryBlockDevice } from "../../src/cow/index.js";
import { isDir, S_IFCHR, S_IFIFO, S_IFMT, S_IFREG } from "../../src/fs/attr.js";
import { type Cred, FileSystem, ROOT, SUPERUSER } from "../../src/fs/filesystem.js";

const WORKER = resolve("test/helpers/perm-worker.mjs");
const CAN_RUN = process.getuid?.() === 0 && spawnSync("setpriv", ["--version"]).status === 0;

/** The owner of most things (nobody:nogroup); another user in its group; that user alone. */
const PERSONAS = {
  owner: { uid: 65534, gid: 65534, groups: [65534] },
  member: { uid: 65533, gid: 65533, groups: [65533, 65534] },
  other: { uid: 65533, gid: 65533, groups: [65533] },
  root: SUPERUSER,
} satisfies Record<string, Cred>;
type Who = keyof typeof PERSONAS;
const O = 65534;
const U = 65533;

interface Op {
  op: string;
  path: string;
  to?: string;
  target?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  flags?: "r" | "w" | "rw" | "trunc";
  mask?: number;
  /** An extended attribute's name. */
  name?: string;
}
type Case = [Who, Op];

/** Made by root before anything: [path, mode (with type bit for dirs), uid, gid]. */
const TREE: [string, "d" | "f", number, number, number][] = [
  ["plain", "d", 0o755, O, O],
  ["plain/f644", "f", 0o644, O, O],
  ["plain/f664", "f", 0o664, O, O],
  ["plain/f600", "f", 0o600, O, O],
  ["plain/f666", "f", 0o666, O, O],
  ["plain/suid", "f", 0o4755, O, O],
  ["plain/suidw", "f", 0o4777, O, O],
  ["plain/suidx", "f", 0o4777, O, O],
  ["plain/sgidw", "f", 0o2777, O, O],
  ["plain/sgidnx", "f", 0o2666, O, O],
  ["plain/sgidnx2", "f", 0o2666, O, O],
  ["plain/rchown", "f", 0o6755, O, O],
  ["plain/rchown2", "f", 0o2745, O, O],
  ["plain/ochgrp", "f", 0o2745, O, O],
  ["plain/rsuid", "f", 0o4777, O, O],
  ["plain/noexec", "f", 0o644, 0, 0],
  ["plain/exec", "f", 0o744, O, O],
  ["plain/tm", "f", 0o644, O, O],
  ["plain/tm2", "f", 0o664, O, O],
  ["plain/sub", "d", 0o755, O, O],
  ["sticky", "d", 0o1777, 0, 0],
  ["stickyO", "d", 0o1777, O, O],
  ["sgid", "d", 0o2777, O, O],
  ["sgidx", "d", 0o2777, 0, 65530],
  ["open", "d", 0o777, 0, 0],
  ["open/dst", "d", 0o777, 0, 0],
  ["priv", "d", 0o700, O, O],
  ["priv/secret", "f", 0o644, O, O],
  ["nox", "d", 0o666, 0, 0],
  ["nox/f", "f", 0o644, 0, 0],
  ["ro", "d", 0o555, 0, 0],
  ["ro/x", "f", 0o644, 0, 0],
  ["gdir", "d", 0o770, 0, O],
];

const c = (who: Who, op: string, path: string, more: Partial<Op> = {}): Case => [
  who,
  { op, path, ...more },
];

/** Phase one: each persona on paths of its own (the batches' order does not matter). */
const PHASE1: Case[] = [
  c("owner", "create", "open/o1", { mode: 0o644 }),
  c("owner", "mkdir", "open/od", { mode: 0o755 }),
  c("owner", "create", "sgid/o_f", { mode: 0o2755 }),
  c("owner", "mkdir", "sgid/o_d", { mode: 0o700 }),
  c("owner", "create", "sgidx/o_f", { mode: 0o2755 }),
  c("owner", "create", "sgidx/o_f2", { mode: 0o2745 }),
  c("owner", "mkdir", "sgidx/o_d", { mode: 0o755 }),
  c("owner", "symlink", "open/o_l", { target: "x" }),
  c("owner", "fifo", "open/o_fifo"),
  c("owner", "chr", "open/o_chr"),
  c("owner", "link", "plain/f644", { to: "open/o_hl" }),
  c("owner", "create", "plain/o2", { mode: 0o600 }),
  c("owner", "create", "ro/x", { mode: 0o644 }),
  c("owner", "create", "ro/new", { mode: 0o644 }),
  c("owner", "mkdir", "ro/x", { mode: 0o755 }),
  c("owner", "create", "nox/g", { mode: 0o644 }),
  c("owner", "stat", "nox/f"),
  c("owner", "create", "priv/o3", { mode: 0o600 }),
  c("owner", "chmod", "plain/f666", { mode: 0o640 }),
  c("owner", "chmod", "plain/tm", { mode: 0o4755 }),
  c("owner", "chown", "plain/f600", { uid: U }),
  c("owner", "chown", "plain/f600", { uid: O }),
  c("owner", "chown", "plain/f644", { gid: U }),
  c("owner", "chown", "plain/ochgrp", { gid: O }),
  c("owner", "write", "plain/suid"),
  c("owner", "truncate", "plain/f600"),
  c("owner", "utime", "plain/tm2"),
  c("owner", "touch", "plain/f644"),
  c("owner", "access", "plain/f600", { mask: 6 }),
  c("owner", "access", "plain/exec", { mask: 1 }),
  c("owner", "access", "plain/f644", { mask: 1 }),
  c("owner", "create", "sticky/o_a", { mode: 0o666 }),
  c("owner", "create", "sticky/o_b", { mode: 0o666 }),
  c("owner", "create", "sticky/o_c", { mode: 0o666 }),
  c("owner", "create", "stickyO/o_own", { mode: 0o644 }),
  c("owner", "open", "priv/secret", { flags: "rw" }),
  c("owner", "setx", "plain/f644", { name: "user.a" }),
  c("owner", "setx", "plain/f644", { name: "trusted.t" }),
  c("owner", "setx", "stickyO", { name: "user.s" }),
  c("owner", "setx", "open/o_fifo", { name: "user.f" }),

  c("member", "create", "open/m1", { mode: 0o666 }),
  c("member", "create", "sgid/m_f", { mode: 0o2755 }),
  c("member", "create", "sgidx/m_f", { mode: 0o2755 }),
  c("member", "mkdir", "sgid/m_d", { mode: 0o755 }),
  c("member", "create", "gdir/m", { mode: 0o644 }),
  c("member", "create", "plain/m", { mode: 0o644 }),
  c("member", "write", "plain/f664"),
  c("member", "open", "plain/f600", { flags: "r" }),
  c("member", "open", "plain/f664", { flags: "rw" }),
  c("member", "open", "plain/f644", { flags: "w" }),
  c("member", "open", "plain/f644", { flags: "trunc" }),
  c("member", "open", "plain/f644", { flags: "r" }),
  c("member", "access", "plain/f644", { mask: 4 }),
  c("member", "access", "plain/f644", { mask: 2 }),
  c("member", "access", "plain/f664", { mask: 2 }),
  c("member", "access", "priv", { mask: 0 }),
  c("member", "chmod", "plain/f664", { mode: 0o600 }),
  c("member", "touch", "plain/f664"),
  c("member", "utime", "plain/f664"),
  c("member", "write", "plain/suidw"),
  c("member", "write", "plain/sgidnx"),
  c("member", "truncate", "plain/f664"),
  c("member", "unlink", "plain/f644"),
  c("member", "stat", "priv/secret"),
  c("member", "link", "plain/f664", { to: "open/m_hl" }),
  c("member", "link", "plain/f644", { to: "open/m_hl2" }),
  c("member", "link", "plain/f664", { to: "plain/m_hl3" }),
  c("member", "create", "sticky/m_a", { mode: 0o666 }),
  c("member", "create", "sticky/m_b", { mode: 0o666 }),
  c("member", "create", "stickyO/m_own", { mode: 0o644 }),
  c("member", "mkdir", "open/m_dir", { mode: 0o555 }),
  c("member", "mkdir", "open/m_dir2", { mode: 0o755 }),
  c("member", "setx", "plain/f664", { name: "user.m" }),
  c("member", "setx", "plain/f644", { name: "user.m" }),
  c("member", "setx", "gdir", { name: "user.g" }),

  c("other", "create", "open/x1", { mode: 0o644 }),
  c("other", "create", "sgid/x_f", { mode: 0o644 }),
  c("other", "create", "sgid/x_f2", { mode: 0o2755 }),
  c("other", "create", "sgid/x_f3", { mode: 0o2745 }),
  c("other", "mkdir", "sgid/x_d", { mode: 0o755 }),
  c("other", "create", "gdir/x", { mode: 0o644 }),
  c("other", "write", "plain/f664"),
  c("other", "open", "plain/f644", { flags: "r" }),
  c("other", "truncate", "plain/f664"),
  c("other", "chmod", "plain/f644", { mode: 0o777 }),
  c("other", "touch", "plain/f644"),
  c("other", "utime", "plain/f644"),
  c("other", "access", "plain/f644", { mask: 1 }),
  c("other", "write", "plain/suidx"),
  c("other", "write", "plain/sgidw"),
  c("other", "write", "plain/sgidnx2"),
  c("other", "rmdir", "plain/sub"),
  c("other", "create", "open/x_s", { mode: 0o644 }),
  c("other", "chmod", "open/x_s", { mode: 0o2755 }),
  c("other", "chown", "open/x1", { gid: O }),
  c("other", "chown", "open/x1", { gid: U }),
  c("other", "chmod", "sgid/x_f", { mode: 0o2755 }),
  c("other", "chmod", "sgid/x_d", { mode: 0o2775 }),
  c("other", "chown", "sgid/x_f3", { uid: U }),
  c("other", "symlink", "priv/l", { target: "x" }),
  c("other", "setx", "sticky", { name: "user.x" }),
  c("other", "setx", "open", { name: "user.o" }),

  c("root", "create", "priv/r1", { mode: 0o644 }),
  c("root", "stat", "nox/f"),
  c("root", "access", "plain/noexec", { mask: 1 }),
  c("root", "access", "plain/exec", { mask: 1 }),
  c("root", "access", "plain/f600", { mask: 6 }),
  c("root", "access", "nox", { mask: 1 }),
  c("root", "chown", "plain/rchown", { uid: U, gid: U }),
  c("root", "chown", "plain/rchown2", { uid: U }),
  c("root", "write", "plain/rsuid"),
  c("root", "chr", "open/r_chr"),
  c("root", "create", "sgidx/r_f", { mode: 0o2755 }),
  c("root", "utime", "plain/noexec"),
  c("root", "open", "plain/f600", { flags: "rw" }),
  c("root", "setx", "plain/f644", { name: "trusted.t" }),
  c("root", "setx", "plain/f600", { name: "user.r" }),
];

/** Phase two: between users, on what phase one made. */
const PHASE2: Case[] = [
  c("other", "unlink", "sticky/o_a"),
  c("other", "unlink", "sticky/m_a"),
  c("other", "rename", "sticky/m_b", { to: "sticky/o_b" }),
  c("other", "rename", "sticky/m_b", { to: "sticky/x_new" }),
  c("other", "rename", "sticky/o_b", { to: "sticky/x_new2" }),
  c("other", "unlink", "stickyO/o_own"),
  c("owner", "unlink", "stickyO/m_own"),
  c("owner", "unlink", "sticky/o_c"),
  c("member", "rename", "open/m_dir", { to: "open/dst/m_dir" }),
  c("member", "rename", "open/m_dir2", { to: "open/dst/m_dir2" }),
  c("member", "rename", "open/m_dir", { to: "open/m_dir3" }),
  c("member", "rmdir", "open/od"),
  c("root", "unlink", "sticky/o_b"),
  c("member", "getx", "plain/f644", { name: "user.a" }),
  c("member", "getx", "plain/f600", { name: "user.r" }),
  c("other", "getx", "plain/f644", { name: "trusted.t" }),
  c("other", "getx", "plain/f644", { name: "user.a" }),
  c("other", "rmx", "plain/f664", { name: "user.m" }),
  c("owner", "getx", "plain/f644", { name: "user.none" }),
  c("owner", "getx", "open/o_fifo", { name: "user.f" }),
  c("root", "getx", "plain/f644", { name: "trusted.t" }),
];

/** Phase three: on what phase two made. */
const PHASE3: Case[] = [
  c("owner", "unlink", "sticky/x_new"),
  c("owner", "rename", "open/dst/m_dir2", { to: "open/m_back" }),
  c("member", "rename", "open/dst/m_dir2", { to: "open/m_back" }),
  c("other", "chmod", "sgid/x_d", { mode: 0o755 }),
  c("owner", "rmx", "plain/f644", { name: "user.a" }),
  c("member", "getx", "plain/f644", { name: "user.a" }),
  c("owner", "rmx", "plain/f644", { name: "trusted.t" }),
];

// ------------------------------------------------------------------ ext4, by real processes

function ext4Setup(base: string): void {
  for (const [p, type, mode, uid, gid] of TREE) {
    const at = join(base, p);
    if (type === "d") nfs.mkdirSync(at);
    else nfs.writeFileSync(at, "");
    nfs.chownSync(at, uid, gid);
    nfs.chmodSync(at, mode);
  }
}

function ext4Batch(base: string, who: Who, ops: Op[]): string[] {
  const cred = PERSONAS[who];
  const abs = ops.map((o) => ({
    ...o,
    path: join(base, o.path),
    to: o.to === undefined ? undefined : join(base, o.to),
  }));
  const args = [
    `--reuid=${cred.uid}`,
    `--regid=${cred.gid}`,
    ...(cred.groups.length ? [`--groups=${cred.groups.join(",")}`] : ["--clear-groups"]),
    "--",
    process.execPath,
    WORKER,
  ];
  const r = spawnSync("setpriv", args, { input: JSON.stringify({ ops: abs }), encoding: "utf8" });
  if (r.status !== 0) throw new Error(`worker as ${who} exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as string[];
}

function ext4Tree(base: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const name of nfs.readdirSync(join(base, rel)).sort()) {
      const p = rel ? `${rel}/${name}` : name;
      const st = nfs.lstatSync(join(base, p));
      out[p] = describeNode(st.mode, st.uid, st.gid, st.size);
      if (st.isDirectory()) walk(p);
    }
  };
  walk("");
  return out;
}

// ------------------------------------------------------------------ shadowfs, through its API

const describeNode = (mode: number, uid: number, gid: number, size: number) =>
  `${uid}:${gid} ${mode.toString(8)}${(mode & S_IFMT) === S_IFREG ? ` ${size}` : ""}`;

async function shadowSetup(fs: FileSystem): Promise<void> {
  for (const [p, type, mode, uid, gid] of TREE) {
    const { dir, name } = await parentOf(fs, p, SUPERUSER);
    const a =
      type === "d"
        ? await fs.mkdir(dir, name, 0o700, SUPERUSER)
        : await fs.create(dir, name, 0o600, SUPERUSER);
    await fs.setattr(a.ino, { uid, gid });
    await fs.setattr(a.ino, { mode });
  }
}

/** Walks `path` as the kernel does for `cred`: each lookup needs search on its directory. */
async function parentOf(fs: FileSystem, path: string, cred: Cred) {
  const parts = path.split("/");
  const name = parts.pop()!;
  let dir = ROOT;
  for (const p of parts) dir = (await fs.lookup(dir, p, cred)).ino;
  return { dir, name };
}

async function inodeOf(fs: FileSystem, path: string, cred: Cred): Promise<number> {
  const { dir, name } = await parentOf(fs, path, cred);
  return (await fs.lookup(dir, name, cred)).ino;
}

const FLAGS = { r: 0, w: 1, rw: 2, trunc: 1 | 0o1000 };

async function shadowOp(fs: FileSystem, o: Op, cred: Cred): Promise<void> {
  const at = () => parentOf(fs, o.path, cred);
  const ino = () => inodeOf(fs, o.path, cred);
  switch (o.op) {
    case "create": {
      const { dir, name } = await at();
      await fs.create(dir, name, o.mode!, cred);
      return;
    }
    case "mkdir": {
      const { dir, name } = await at();
      await fs.mkdir(dir, name, o.mode!, cred);
      return;
    }
    case "fifo":
    case "chr": {
      const { dir, name } = await at();
      const type = o.op === "fifo" ? S_IFIFO : S_IFCHR;
      await fs.mknod(dir, name, type | 0o666, o.op === "chr" ? (1 << 8) | 3 : 0, cred);
      return;
    }
    case "symlink": {
      const { dir, name } = await at();
      await fs.symlink(dir, name, o.target!, cred);
      return;
    }
    case "link": {
      const from = await ino();
      const to = await parentOf(fs, o.to!, cred);
      await fs.link(from, to.dir, to.name, cred);
      return;
    }
    case "rename": {
      const a = await at();
      const b = await parentOf(fs, o.to!, cred);
      await fs.rename(a.dir, a.name, b.dir, b.name, {}, cred);
      return;
    }
    case "unlink":
    case "rmdir": {
      const { dir, name } = await at();
      await (o.op === "unlink" ? fs.unlink(dir, name, cred) : fs.rmdir(dir, name, cred));
      return;
    }
    case "chmod":
      await fs.setattr(await ino(), { mode: o.mode! }, cred);
      return;
    case "chown":
      await fs.setattr(await ino(), { uid: o.uid, gid: o.gid }, cred);
      return;
    case "truncate":
      await fs.setattr(await ino(), { size: 0 }, cred);
      return;
    case "utime":
      await fs.setattr(
        await ino(),
        { atime: { sec: 1000, nsec: 0 }, mtime: { sec: 2000, nsec: 0 } },
        cred,
      );
      return;
    case "touch":
      await fs.setattr(await ino(), { atime: "now", mtime: "now" }, cred);
      return;
    case "open": {
      const i = await ino();
      await fs.open(i, FLAGS[o.flags!], cred);
      await fs.release(i);
      return;
    }
    case "write": {
      const i = await ino();
      const a = await fs.open(i, 1, cred);
      try {
        await fs.write(i, a.size, Buffer.from("x"), cred);
      } finally {
        await fs.release(i);
      }
      return;
    }
    case "access":
      await fs.access(await ino(), o.mask!, cred);
      return;
    case "stat":
      await fs.getattr(await ino());
      return;
    case "setx":
      await fs.setxattr(await ino(), o.name!, Buffer.from("1"), {}, cred);
      return;
    case "getx":
      await fs.getxattr(await ino(), o.name!, cred);
      return;
    case "rmx":
      await fs.removexattr(await ino(), o.name!, cred);
      return;
    default:
      throw new Error(`unknown op ${o.op}`);
  }
}

async function shadowTree(fs: FileSystem): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (ino: number, rel: string) => {
    const entries = (await fs.readdir(ino, 0n, 100000)).filter(
      (e) => e.name.toString() !== "." && e.name.toString() !== "..",
    );
    for (const e of entries.sort((a, b) => (a.name.toString() < b.name.toString() ? -1 : 1))) {
      const p = rel ? `${rel}/${e.name}` : e.name.toString();
      const a = await fs.getattr(e.ino);
      out[p] = describeNode(a.mode, a.uid, a.gid, a.size);
      if (isDir(a.mode)) await walk(e.ino, p);
    }
  };
  await walk(ROOT, "");
  return out;
}

// ------------------------------------------------------------------ the comparison

/** Runs a phase: one batch per persona on each side; returns "who op path: result" lines. */
async function phase(
  cases: Case[],
  onExt4: (who: Who, ops: Op[]) => string[],
  onShadow: (who: Who, ops: Op[]) => Promise<string[]>,
): Promise<{ ext4: string[]; shadow: string[] }> {
  const ext4: string[] = [];
  const shadow: string[] = [];
  for (const who of Object.keys(PERSONAS) as Who[]) {
    const ops = cases.filter(([w]) => w === who).map(([, o]) => o);
    if (ops.length === 0) continue;
    const label = (o: Op) =>
      `${who} ${o.op} ${o.path}${o.to ? ` ${o.to}` : ""}${o.mode !== undefined ? ` ${o.mode.toString(8)}` : ""}${o.flags ? ` ${o.flags}` : ""}${o.mask !== undefined ? ` mask=${o.mask}` : ""}${o.uid !== undefined ? ` uid=${o.uid}` : ""}${o.gid !== undefined ? ` gid=${o.gid}` : ""}${o.name ? ` ${o.name}` : ""}`;
    const a = onExt4(who, ops);
    const b = await onShadow(who, ops);
    ops.forEach((o, i) => {
      ext4.push(`${label(o)}: ${a[i]}`);
      shadow.push(`${label(o)}: ${b[i]}`);
    });
  }
  return { ext4, shadow };
}

describe.skipIf(!CAN_RUN)("permissions and ownership, against ext4", () => {
  let base: string;
  let fs: FileSystem;

  beforeAll(async () => {
    base = nfs.mkdtempSync(join(tmpdir(), "shadowfs-perm-"));
    nfs.chmodSync(base, 0o755);
    const dev = new MemoryBlockDevice(64 << 20);
    await FileSystem.mkfs(dev);
    fs = await FileSystem.open(dev);
  });
  afterAll(() => {
    if (base) nfs.rmSync(base, { recursive: true, force: true });
  });

  it("gives the same errno and leaves the same owners, groups and modes, case by case", async () => {
    ext4Setup(base);
    await shadowSetup(fs);
    expect(await shadowTree(fs)).toEqual(ext4Tree(base));
    const onShadow = async (who: Who, ops: Op[]) => {
      const out: string[] = [];
      for (const o of ops) {
        try {
          await shadowOp(fs, o, PERSONAS[who]);
          out.push("OK");
        } catch (e) {
          out.push((e as { code?: string }).code ?? String(e));
        }
      }
      return out;
    };
    const seen: string[] = [];
    for (const cases of [PHASE1, PHASE2, PHASE3]) {
      const r = await phase(cases, (who, ops) => ext4Batch(base, who, ops), onShadow);
      if (process.env.PERM_DEBUG) console.log(r.ext4.join("\n"));
      expect(r.shadow).toEqual(r.ext4);
      seen.push(...r.ext4);
    }
    expect(await shadowTree(fs)).toEqual(ext4Tree(base));
    // No tautology: ext4 granted and refused something to each of them (EPERM and EACCES both).
    for (const who of Object.keys(PERSONAS)) {
      const mine = seen.filter((l) => l.startsWith(`${who} `));
      expect(mine.some((l) => l.endsWith(": OK"))).toBe(true);
      expect(mine.some((l) => / (EACCES|EPERM)$/.test(l))).toBe(true);
    }
    expect(seen.filter((l) => l.endsWith(": ENOENT"))).toEqual([]);
  });
});
