// What FuseOps hands fuse-native: the binding tells the kernel it implements exactly the
// operations it is given, so a family file that loses or gains one changes what the kernel sends.

import { describe, expect, it } from "vitest";
import { Gate, MemoryBlockDevice } from "../../src/cow/index.js";
import { FileSystem, SUPERUSER } from "../../src/fs/filesystem.js";
import { FuseOps, View } from "../../src/mount/index.js";

async function ops(): Promise<Record<string, unknown>> {
  const dev = new MemoryBlockDevice(16 << 20);
  await FileSystem.mkfs(dev, {});
  return new FuseOps({
    root: new View(await FileSystem.open(dev), "production"),
    gate: new Gate(),
    log: { error: () => undefined },
    caller: () => SUPERUSER,
  }).operations();
}

/** Calls an operation of a fresh mount's and resolves to the arguments of its callback. */
async function answerer(): Promise<(name: string, ...args: unknown[]) => Promise<unknown[]>> {
  const all = (await ops()) as Record<string, (...args: unknown[]) => void>;
  return (name, ...args) =>
    new Promise((done) => all[name]!(...args, (...r: unknown[]) => done(r)));
}

describe("the operations handed to fuse-native", () => {
  it("are exactly these, each a function; no flush, so the kernel stops sending one", async () => {
    const all = await ops();
    expect(Object.keys(all).sort()).toEqual(
      [
        "access",
        "chmod",
        "chown",
        "create",
        "fsync",
        "fsyncdir",
        "ftruncate",
        "getattr",
        "getxattr",
        "init",
        "link",
        "listxattr",
        "mkdir",
        "mknod",
        "open",
        "opendir",
        "read",
        "readdir",
        "readlink",
        "release",
        "releasedir",
        "removexattr",
        "rename",
        "rmdir",
        "setxattr",
        "statfs",
        "symlink",
        "truncate",
        "unlink",
        "utimens",
        "write",
      ].sort(),
    );
    for (const fn of Object.values(all)) expect(typeof fn).toBe("function");
  });

  it("answer through the callback, with -errno for what fails", async () => {
    const answer = await answerer();
    const [err, stat] = await answer("mkdir", "/d", 0o755);
    expect(err).toBe(0);
    expect((stat as { mode: number }).mode & 0o170000).toBe(0o040000);
    expect((await answer("getattr", "/missing"))[0]).toBe(-2);
    expect((await answer("getattr", "/d"))[0]).toBe(0);
  });

  it("find a name made right after it was found absent, whichever operation made it", async () => {
    const answer = await answerer();
    const errno = async (name: string, ...args: unknown[]) => (await answer(name, ...args))[0];
    const makes: Array<[string, () => Promise<unknown>]> = [
      ["/c", () => answer("create", "/c", 0o100644)],
      ["/d", () => answer("mkdir", "/d", 0o755)],
      ["/n", () => answer("mknod", "/n", 0o010644, 0)],
      ["/s", () => answer("symlink", "target", "/s")],
      ["/l", () => answer("link", "/c", "/l")],
      ["/r", () => answer("rename", "/s", "/r")],
    ];
    for (const [path, make] of makes) {
      expect(await errno("getattr", path)).toBe(-2);
      expect(await errno("getattr", path)).toBe(-2); // the second time, from what the view keeps
      await make();
      expect(await errno("getattr", path)).toBe(0);
    }
    expect(await errno("getattr", "/s")).toBe(-2); // renamed away
    expect(await errno("unlink", "/l")).toBe(0);
    expect(await errno("getattr", "/l")).toBe(-2);
  });

  it("resolve a path from the names they keep as a search would: every component, and renames", async () => {
    const answer = await answerer();
    const ino = async (path: string) => {
      const [err, stat] = await answer("getattr", path);
      return err === 0 ? (stat as { ino: number }).ino : err;
    };
    for (const d of ["/a", "/a/b", "/x"]) await answer("mkdir", d, 0o755);
    const f = ((await answer("create", "/a/b/f", 0o100644))[2] as { ino: number }).ino;
    const g = ((await answer("create", "/x/f", 0o100644))[2] as { ino: number }).ino;
    for (let pass = 0; pass < 2; pass++) {
      // The second pass finds every name in what the view keeps.
      expect(await ino("/a/b/f")).toBe(f);
      expect(await ino("/x/f")).toBe(g);
      expect(await ino("/a/b/g")).toBe(-2);
    }
    expect((await answer("chmod", "/a/b/f", 0o100600))[0]).toBe(0);
    expect(((await answer("getattr", "/a/b/f"))[1] as { mode: number }).mode & 0o7777).toBe(0o600);
    expect((await answer("rename", "/a/b", "/a/c"))[0]).toBe(0);
    expect(await ino("/a/b/f")).toBe(-2);
    expect(await ino("/a/c/f")).toBe(f);
    expect(((await answer("getattr", "/x/f"))[1] as { mode: number }).mode & 0o7777).toBe(0o644);
  });

  it("answer an extended attribute that is not there with ENODATA, one that is with its value", async () => {
    const answer = await answerer();
    await answer("mknod", "/f", 0o100644, 0);
    expect((await answer("getxattr", "/f", "security.capability", 0))[0]).toBe(-61);
    expect((await answer("setxattr", "/f", "user.a", Buffer.from("v"), 0, 0))[0]).toBe(0);
    const [err, value] = await answer("getxattr", "/f", "user.a", 0);
    expect(err).toBe(0);
    expect(String(value)).toBe("v");
    expect((await answer("getxattr", "/missing", "user.a", 0))[0]).toBe(-2);
  });
});
