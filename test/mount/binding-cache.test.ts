// The patched binding's kernel cache (docs/fuse-native.md), through a real mount of a tiny
// filesystem served by a child process: an open may keep the file's pages, and the kernel drops
// an inode (in every node it holds for it) or a name, present or absent, when told to; by root's
// tools and another user's alike. Without the invalidation each change stays unseen for a minute.

import { type ChildProcess, execFile, fork, spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { chmod, mkdir, mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { CacheFuseMessage, CacheFuseRequest } from "../helpers/cache-fuse.js";
import { endChildMount } from "../helpers/child-mount.js";

const HELPER = fileURLToPath(new URL("../helpers/cache-fuse.ts", import.meta.url));
const run = promisify(execFile);
const NOBODY = 65534;
const CAN_SETPRIV = process.getuid?.() === 0 && spawnSync("setpriv", ["--version"]).status === 0;

let dir: string | undefined;
let mnt = "";
let child: ChildProcess | undefined;

/** A command's output, or "failed" when it fails; as nobody when `nobody` (and setpriv can). */
async function sh(command: string, nobody = false): Promise<string> {
  const user = [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", "--"];
  const [file, args] =
    nobody && CAN_SETPRIV
      ? ["setpriv", [...user, "bash", "-c", command]]
      : ["bash", ["-c", command]];
  try {
    const { stdout } = await run(file, args);
    return stdout.trim();
  } catch {
    return "failed";
  }
}

/** Sends `m` to the child and waits for its answer. */
function ask(m: CacheFuseRequest): Promise<CacheFuseMessage> {
  return new Promise((resolve, reject) => {
    const c = child!;
    const timer = setTimeout(() => finish(new Error(`no answer to ${m.type}`)), 30_000);
    const onMessage = (r: CacheFuseMessage) => {
      if (r.type === "failed") finish(new Error(r.message));
      else if (r.type !== "ready") finish(null, r);
    };
    const finish = (err: Error | null, r?: CacheFuseMessage) => {
      clearTimeout(timer);
      c.off("message", onMessage);
      if (err) reject(err);
      else resolve(r!);
    };
    c.on("message", onMessage);
    c.send(m);
  });
}

async function reads(path: string): Promise<number> {
  const r = await ask({ type: "reads" });
  return r.type === "reads" ? (r.reads[path] ?? 0) : -1;
}

const cat = (name: string, nobody = false) => sh(`cat ${join(mnt, name)}`, nobody);
const stat = (name: string) => sh(`stat -c '%i %s %Y %h' ${join(mnt, name)}`);

describe("the binding's kernel cache through a real mount", () => {
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "shadowfs-binding-cache-"));
    await chmod(dir, 0o755);
    mnt = join(dir, "mnt");
    await mkdir(mnt);
    child = fork(HELPER, [mnt], {
      execArgv: ["--import", "tsx"],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    const [m] = (await once(child, "message")) as [CacheFuseMessage];
    if (m.type !== "ready") throw new Error(`cache-fuse: ${JSON.stringify(m)}`);
  });

  afterEach(async () => {
    const c = child;
    child = undefined;
    await endChildMount(c, mnt, dir);
    dir = undefined;
    const table = await readFile("/proc/mounts", "utf8");
    expect(table.split("\n").some((l) => l.split(" ")[1] === mnt)).toBe(false);
  });

  it("an open answered with keepCache keeps the file's pages; one without drops them", async () => {
    expect(await cat("keep")).toBe("kept-1");
    expect(await cat("keep")).toBe("kept-1");
    expect(await cat("keep")).toBe("kept-1");
    expect(await reads("/keep")).toBe(1);
    expect(await cat("drop")).toBe("drop-1");
    expect(await cat("drop")).toBe("drop-1");
    expect(await reads("/drop")).toBe(2);
  });

  it("invalidateInode drops an inode's data and attributes, in every name's node", async () => {
    await ask({ type: "link", path: "/keep", to: "/keep-too" });
    expect(await cat("keep")).toBe("kept-1");
    expect(await cat("keep-too")).toBe("kept-1");
    // After the reads: a read makes the kernel ask for the atime again.
    const before = await stat("keep");
    expect(await stat("keep-too")).toBe(before);
    await ask({ type: "set", path: "/keep", text: "kept-2" });
    // Kept: the change is unseen, attributes and data alike.
    expect(await stat("keep")).toBe(before);
    expect(await stat("keep-too")).toBe(before);
    expect(await cat("keep")).toBe("kept-1");
    expect(await cat("keep-too")).toBe("kept-1");

    await ask({ type: "inode", path: "/keep" });
    expect(await cat("keep")).toBe("kept-2");
    expect(await cat("keep-too")).toBe("kept-2");
    expect(await cat("keep", true)).toBe("kept-2");
    expect(await stat("keep")).not.toBe(before);
    expect(await stat("keep-too")).toBe(await stat("keep"));
  });

  it("invalidateEntry drops a name known as absent, and one that is gone", async () => {
    expect(await stat("new")).toBe("failed");
    await ask({ type: "add", path: "/new", text: "hello" });
    expect(await stat("new")).toBe("failed");
    await ask({ type: "entry", name: "new" });
    expect(await cat("new")).toBe("hello");
    expect(await cat("new", true)).toBe("hello");

    expect(await sh(`ls ${mnt}/drop`)).toBe(`${mnt}/drop`);
    await ask({ type: "remove", path: "/drop" });
    expect(await sh(`ls ${mnt}/drop`)).toBe(`${mnt}/drop`);
    await ask({ type: "entry", name: "drop" });
    expect(await sh(`ls ${mnt}/drop`)).toBe("failed");
  });

  it("invalidateAll drops every inode and name the kernel holds", async () => {
    expect(await cat("keep")).toBe("kept-1");
    expect(await stat("drop")).not.toBe("failed");
    await ask({ type: "set", path: "/keep", text: "kept-3" });
    await ask({ type: "remove", path: "/drop" });
    expect(await cat("keep")).toBe("kept-1");
    expect(await stat("drop")).not.toBe("failed");

    await ask({ type: "all" });
    expect(await cat("keep")).toBe("kept-3");
    expect(await stat("drop")).toBe("failed");
  });

  it("a name that comes to stand for another inode has its node's pages dropped", async () => {
    expect(await cat("keep")).toBe("kept-1");
    // An open file keeps the kernel's inode, and libfuse its node, after the name is dropped.
    const holder = spawn("bash", ["-c", `exec 3<${mnt}/keep; echo open; sleep 60`], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    try {
      await once(holder.stdout!, "data");
      // Behind the kernel: another file, of the same size, under the same name.
      await ask({ type: "remove", path: "/keep" });
      await ask({ type: "add", path: "/keep", text: "other!" });
      await ask({ type: "entry", name: "keep" });
      // libfuse answers the lookup with the same node, whose pages were the other inode's.
      expect(await cat("keep")).toBe("other!");
    } finally {
      const exited = once(holder, "exit");
      holder.kill("SIGKILL");
      await exited;
    }
  });
});
