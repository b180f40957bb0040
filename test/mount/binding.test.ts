// The fuse-native binding as patched (docs/fuse-native.md), through a real mount: times cross it
// to the nanosecond both ways, UTIME_NOW / UTIME_OMIT arrive as such, use_ino and big writes work,
// and every request says who made it.

import { type ChildProcess, execFile, fork } from "node:child_process";
import { chmod, mkdir, mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { endChildMount } from "../helpers/child-mount.js";
import {
  type CallerCall,
  FIRST_INO,
  LENT_BYTES,
  LENT_TAIL,
  lentByte,
  type TinyFuseMessage,
  type UtimensCall,
} from "../helpers/tiny-fuse.js";

const HELPER = fileURLToPath(new URL("../helpers/tiny-fuse.ts", import.meta.url));
const READY_WITHIN_MS = 30_000;
const run = promisify(execFile);

let dir: string | undefined;
let mnt = "";
let child: ChildProcess | undefined;

/** Runs a command with UTC times; the file system is served by the child, not this process. */
async function sh(cmd: string, ...args: string[]): Promise<string> {
  const { stdout } = await run(cmd, args, { env: { ...process.env, TZ: "UTC" } });
  return stdout.trim();
}

/** The next message of one type from the child, or an error if it fails, exits or takes too long. */
function next(c: ChildProcess, type: TinyFuseMessage["type"]): Promise<TinyFuseMessage> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`no "${type}" from tiny-fuse`)), READY_WITHIN_MS);
    const onMessage = (m: TinyFuseMessage) => {
      if (m.type === "failed") done(new Error(`tiny-fuse: ${m.message}`));
      else if (m.type === type) done(null, m);
    };
    const onExit = (code: number | null) => done(new Error(`tiny-fuse exited (${code})`));
    const done = (err: Error | null, m?: TinyFuseMessage) => {
      clearTimeout(timer);
      c.off("message", onMessage);
      c.off("exit", onExit);
      if (err) reject(err);
      else resolve(m!);
    };
    c.on("message", onMessage);
    c.on("exit", onExit);
  });
}

async function calls(): Promise<{
  utimens: UtimensCall[];
  writes: number[];
  getattrs: Record<string, number>;
  lent: number;
  lentDone: number;
  callers: CallerCall[];
}> {
  const reply = next(child!, "calls");
  child!.send({ type: "calls" });
  const m = await reply;
  if (m.type !== "calls") throw new Error(`unexpected ${m.type}`);
  return m;
}

/** The lent-read counts once the binding has reported every lent read done (it reports soon). */
async function lentCounts(): Promise<{ lent: number; lentDone: number }> {
  for (let i = 0; ; i++) {
    const { lent, lentDone } = await calls();
    if (lent === lentDone || i === 200) return { lent, lentDone };
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Runs a command (by another process than the one serving the mount); resolves to its pid. */
async function pidOf(cmd: string, ...args: string[]): Promise<number> {
  const running = run(cmd, args);
  await running;
  return running.child.pid ?? -1;
}

async function lastUtimens(): Promise<UtimensCall> {
  const { utimens } = await calls();
  expect(utimens.length).toBeGreaterThan(0);
  return utimens.at(-1)!;
}

async function mounted(path: string): Promise<boolean> {
  const table = await readFile("/proc/mounts", "utf8");
  return table.split("\n").some((line) => line.split(" ")[1] === path);
}

/** 2001-02-03 04:05:06.123456789 UTC in nanoseconds since the epoch. */
const T2001 = BigInt(Date.UTC(2001, 1, 3, 4, 5, 6)) * 1_000_000n + 123_456_789n;
const T2001_TEXT = "2001-02-03 04:05:06.123456789 +0000";

describe("fuse-native binding through a real mount", () => {
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "shadowfs-binding-"));
    mnt = join(dir, "mnt");
    await mkdir(mnt);
    child = fork(HELPER, [mnt], {
      execArgv: ["--import", "tsx"],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    await next(child, "ready");
  });

  afterEach(async () => {
    const c = child;
    child = undefined;
    await endChildMount(c, mnt, dir);
    dir = undefined;
    expect(await mounted(mnt)).toBe(false);
  });

  it("touch -d sets atime and mtime to the nanosecond", async () => {
    const f = join(mnt, "f");
    await sh("touch", "-d", "2001-02-03 04:05:06.123456789", f);
    expect(await lastUtimens()).toEqual({ path: "/f", atime: `${T2001}`, mtime: `${T2001}` });
    expect(await sh("stat", "-c", "%x|%y", f)).toBe(`${T2001_TEXT}|${T2001_TEXT}`);

    // Before 1970 the nanoseconds count down from the epoch.
    await sh("touch", "-d", "1969-12-31 23:59:58.25", f);
    const before1970 = `${-1_750_000_000n}`;
    expect(await lastUtimens()).toEqual({ path: "/f", atime: before1970, mtime: before1970 });
    const text = "1969-12-31 23:59:58.250000000 +0000";
    expect(await sh("stat", "-c", "%x|%y", f)).toBe(`${text}|${text}`);
  });

  it("touch -a changes atime only: mtime arrives as omit", async () => {
    const f = join(mnt, "f");
    await sh("touch", "-d", "2001-02-03 04:05:06.123456789", f);
    await sh("touch", "-a", f);
    expect(await lastUtimens()).toEqual({ path: "/f", atime: "now", mtime: "omit" });
    const [atime, mtime] = (await sh("stat", "-c", "%x|%y", f)).split("|");
    expect(mtime).toBe(T2001_TEXT);
    expect(atime).not.toBe(T2001_TEXT);
  });

  it("touch -m changes mtime only: atime arrives as omit", async () => {
    const f = join(mnt, "f");
    await sh("touch", "-d", "2001-02-03 04:05:06.123456789", f);
    await sh("touch", "-m", f);
    expect(await lastUtimens()).toEqual({ path: "/f", atime: "omit", mtime: "now" });
    const [atime, mtime] = (await sh("stat", "-c", "%x|%y", f)).split("|");
    expect(atime).toBe(T2001_TEXT);
    expect(mtime).not.toBe(T2001_TEXT);
  });

  it("touch without a time sends now for both", async () => {
    const f = join(mnt, "f");
    await sh("touch", "-d", "2001-02-03 04:05:06.123456789", f);
    await sh("touch", f);
    expect(await lastUtimens()).toEqual({ path: "/f", atime: "now", mtime: "now" });
    const [atime, mtime] = (await sh("stat", "-c", "%x|%y", f)).split("|");
    expect(atime).not.toBe(T2001_TEXT);
    expect(mtime).not.toBe(T2001_TEXT);
  });

  it("stat shows the inode number getattr returns (use_ino)", async () => {
    const f = join(mnt, "f");
    await sh("touch", f);
    expect(await sh("stat", "-c", "%i", f)).toBe(String(FIRST_INO));
    expect(await sh("stat", "-c", "%i", mnt)).toBe("1");
  });

  it("the kernel keeps attributes as long as getattr's attrTimeout says, else asks each time", async () => {
    const keep = join(mnt, "keep");
    const plain = join(mnt, "plain");
    await sh("touch", keep, plain);
    const before = (await calls()).getattrs;
    for (let i = 0; i < 3; i++) await sh("stat", keep, plain);
    const after = (await calls()).getattrs;
    expect((after["/plain"] ?? 0) - (before["/plain"] ?? 0)).toBeGreaterThanOrEqual(3);
    expect(after["/keep"]).toBe(before["/keep"]);
    // A change through the kernel still shows at once: it drops what it kept.
    await sh("touch", "-d", "2001-02-03 04:05:06.123456789 UTC", keep);
    expect(await sh("stat", "-c", "%y", keep)).toBe(T2001_TEXT);
  });

  it("a create that gives the new file's attributes spares libfuse's getattr after it", async () => {
    const given = join(mnt, "given");
    const plain = join(mnt, "plain");
    await sh("bash", "-c", `: > ${given} && : > ${plain}`);
    const { getattrs } = await calls();
    // Each name: one getattr for the lookup that found nothing; plain: one more after the create.
    expect(getattrs["/given"]).toBe(1);
    expect(getattrs["/plain"]).toBe(2);
    expect(await sh("stat", "-c", "%i %s %a", given)).toBe(`${FIRST_INO} 0 644`);
  });

  it("a 1 MiB write arrives in requests larger than 4 KiB (big_writes, max_write)", async () => {
    const f = join(mnt, "big");
    await sh("dd", "if=/dev/zero", `of=${f}`, "bs=1M", "count=1", "status=none");
    const { writes } = await calls();
    expect(writes.reduce((a, b) => a + b, 0)).toBe(2 ** 20);
    expect(Math.max(...writes)).toBeGreaterThan(4096);
    expect(Math.max(...writes)).toBeLessThanOrEqual(131072);
    expect(await sh("stat", "-c", "%s", f)).toBe(String(2 ** 20));
  });

  it("a read may leave part of its reply to the binding, read from a host file", async () => {
    const expected = Buffer.alloc(LENT_BYTES + LENT_TAIL);
    for (let i = 0; i < LENT_BYTES; i++) expected[i] = lentByte(i);
    // Read by another process: whole, and 4 KiB here and there (past the host file's end too).
    const { stdout } = await run("cat", [join(mnt, "lent")], {
      encoding: "buffer",
      maxBuffer: 1 << 22,
    });
    expect(Buffer.compare(stdout, expected)).toBe(0);
    for (const at of [0, 12_345, 500_000, LENT_BYTES - 100, LENT_BYTES + LENT_TAIL - 10]) {
      const args = [`if=${join(mnt, "lent")}`, `skip=${at}`, "bs=4096", "count=1", "status=none"];
      const piece = await run("dd", [...args, "iflag=skip_bytes"], { encoding: "buffer" });
      expect(Buffer.compare(piece.stdout, expected.subarray(at, at + 4096))).toBe(0);
    }
    const { lent, lentDone } = await lentCounts();
    expect(lent).toBeGreaterThan(0);
    expect(lentDone).toBe(lent);
  });

  it("a lent read the host refuses fails with the host's error", async () => {
    const r = await run("cat", [join(mnt, "lentbad")]).catch((e: { stderr: string }) => e);
    expect(String((r as { stderr: string }).stderr)).toMatch(/Bad file descriptor/);
    const { lent, lentDone } = await lentCounts();
    expect(lent).toBeGreaterThan(0);
    expect(lentDone).toBe(lent);
  });

  it("a create and a mkdir know who asked: user, group, supplementary groups and process", async () => {
    // Another user must reach the mountpoint: mkdtemp made its directory 0700.
    await chmod(dir!, 0o755);
    const nobody = ["--reuid=65534", "--regid=65534", "--groups=65534,65533", "--"];
    const created = await pidOf("setpriv", ...nobody, "touch", join(mnt, "x"));
    const made = await pidOf("setpriv", ...nobody, "mkdir", join(mnt, "d"));
    const rootCreated = await pidOf("touch", join(mnt, "r"));
    const rootMade = await pidOf("mkdir", join(mnt, "rd"));
    const { callers } = await calls();
    const sorted = ({ op, path, caller }: CallerCall) => ({
      op,
      path,
      caller: { ...caller, groups: [...caller.groups].sort((a, b) => a - b) },
    });
    const user = { uid: 65534, gid: 65534, groups: [65533, 65534] };
    const root = { uid: 0, gid: 0, groups: [] };
    expect(callers.map(sorted)).toEqual([
      { op: "create", path: "/x", caller: { ...user, pid: created } },
      { op: "mkdir", path: "/d", caller: { ...user, pid: made } },
      { op: "create", path: "/r", caller: { ...root, pid: rootCreated } },
      { op: "mkdir", path: "/rd", caller: { ...root, pid: rootMade } },
    ]);
    expect(Math.min(created, made, rootCreated, rootMade)).toBeGreaterThan(0);
  });
});
