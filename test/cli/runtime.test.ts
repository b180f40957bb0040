// Where a mounted store keeps its runtime files, and who may hold it: the control socket lives
// under /run/shadowfs (so a store works on a filesystem that cannot hold a socket), and the store
// lock is a kernel lock that one process at a time holds and that dies with its holder.

import { type ChildProcess, fork } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { storePaths } from "../../src/daemon/paths.js";
import {
  CLI,
  lockPid,
  mountsUnder,
  ok,
  run,
  running,
  type Scratch,
  scratch,
  sh,
  shadowfs,
  until,
} from "../helpers/mounted.js";

const NO_SOCKET_FUSE = join(import.meta.dirname, "..", "helpers", "no-socket-fuse.ts");

let s: Scratch | undefined;
let hostFs: ChildProcess | undefined;

afterEach(async () => {
  try {
    // The store's daemon first: its store lives on the other mount.
    for (const pid of s ? [lockPid(join(s.dir, "lower", "store")), lockPid(s.store)] : [])
      if (pid !== undefined && running(pid)) {
        process.kill(pid, "SIGTERM");
        await until(`daemon ${pid} has stopped`, () => !running(pid));
      }
    const c = hostFs;
    hostFs = undefined;
    if (c && c.exitCode === null && c.signalCode === null) {
      const exited = once(c, "exit");
      c.kill("SIGTERM");
      await exited;
    }
  } finally {
    const dir = s?.dir;
    await s?.cleanup();
    s = undefined;
    if (dir) expect(await mountsUnder(dir)).toEqual([]);
  }
});

/** Mounts a filesystem without sockets at `mnt`, passing through to `host`. */
async function noSocketFs(host: string, mnt: string): Promise<void> {
  mkdirSync(host);
  mkdirSync(mnt);
  const child = fork(NO_SOCKET_FUSE, [host, mnt], {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  hostFs = child;
  const [msg] = (await once(child, "message")) as [{ type: string; message?: string }];
  if (msg.type !== "ready") throw new Error(`the filesystem did not mount: ${msg.message}`);
}

describe("runtime files", () => {
  it("a store on a filesystem that cannot hold a socket mounts, and its socket is in /run/shadowfs", async () => {
    s = await scratch();
    const lower = join(s.dir, "lower");
    await noSocketFs(join(s.dir, "host"), lower);
    // What the store's filesystem refuses: a Unix socket, as on NFS or a FUSE mount without mknod.
    const bind = sh(`node -e 'require("net").createServer().listen("${lower}/probe.sock")'`);
    expect(bind.code).not.toBe(0);
    const store = join(lower, "store");
    await ok("init", store, "--size", "64M");
    await ok("mount", store, s.mnt);

    writeFileSync(join(s.mnt, "f"), "kept\n");
    const gmt = (await ok("snapshot", "create", s.mnt)).trim();
    expect(run(`cat ${join(s.mnt, ".snapshots", gmt, "f")}`)).toBe("kept\n");

    const socket = storePaths(store).socket;
    expect(dirname(socket)).toBe("/run/shadowfs");
    expect(statSync(socket).isSocket()).toBe(true);
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    expect(statSync("/run/shadowfs").mode & 0o777).toBe(0o700);
    const st = JSON.parse(await ok("status", store, "--json")) as { mountpoint: string | null };
    expect(st.mountpoint).toBe(s.mnt);

    await ok("unmount", s.mnt);
    expect(() => statSync(socket)).toThrow();
  });
});

describe("the store lock", () => {
  it("two mounts of one store started together: exactly one wins", async () => {
    s = await scratch();
    await ok("init", s.store, "--size", "64M");
    for (let round = 0; round < 4; round++) {
      const a = join(s.dir, `a${round}`);
      const b = join(s.dir, `b${round}`);
      mkdirSync(a);
      mkdirSync(b);
      const runs = await Promise.all([
        shadowfs("mount", s.store, a),
        shadowfs("mount", s.store, b),
      ]);
      const won = runs.filter((r) => r.code === 0);
      expect(won, runs.map((r) => r.stderr).join("")).toHaveLength(1);
      const lost = runs.find((r) => r.code !== 0)!;
      expect(lost.stderr).toMatch(/in use by process \d+/);
      expect(await mountsUnder(s.dir)).toEqual([runs[0]!.code === 0 ? a : b]);
      await ok("unmount", runs[0]!.code === 0 ? a : b);
    }
  });

  it("the command and its daemon start without NODE_EXTRA_CA_CERTS, which only slows Node's start", async () => {
    s = await scratch();
    // A file that cannot be read: Node says so on stderr as it starts, if it reads the variable.
    const env = `NODE_EXTRA_CA_CERTS=${join(s.dir, "missing.pem")}`;
    const cli = join(import.meta.dirname, "..", "..", "dist", "src", "cli", "main.js");
    expect(sh(`${env} node -e 0`).stderr).toMatch(/Ignoring extra certs/);
    // As the installed command runs: a link to the file, run through its first line.
    const version = sh(
      `chmod +x ${cli} && ln -s ${cli} ${s.dir}/shadowfs && ${env} ${s.dir}/shadowfs --version`,
    );
    expect(version).toMatchObject({ code: 0, stderr: "" });
    run(
      `${env} node ${cli} init ${s.store} --size 64M && ${env} node ${cli} mount ${s.store} ${s.mnt}`,
    );
    const daemon = readFileSync(`/proc/${lockPid(s.store)!}/environ`, "utf8").split("\0");
    expect(daemon.filter((v) => v.startsWith("NODE_EXTRA_CA_CERTS="))).toEqual([]);
    expect(readFileSync(storePaths(s.store).log, "utf8")).not.toMatch(/Ignoring extra certs/);
    await ok("unmount", s.mnt);
  });

  it("the command starts without the libraries and layers only some commands need", async () => {
    // What `--help` loads is what every command pays before it runs: the schema library (about
    // 50 ms to load), the object storage client and the store's own code load when a command
    // needs them.
    s = await scratch();
    const loaded = join(s.dir, "loaded");
    const hook = join(s.dir, "hook.mjs");
    const record = `import { appendFileSync } from "node:fs";
export async function load(url, context, next) { appendFileSync(${JSON.stringify(loaded)}, url + "\\n"); return next(url, context); }`;
    writeFileSync(
      hook,
      `import { register } from "node:module";\nregister("data:text/javascript," + ${JSON.stringify(encodeURIComponent(record))});\n`,
    );
    expect(sh(`node --import ${hook} ${CLI} --help`)).toMatchObject({ code: 0, stderr: "" });
    const urls = readFileSync(loaded, "utf8").trim().split("\n");
    expect(urls).toContainEqual(expect.stringMatching(/\/dist\/bin\/main\.js$/));
    expect(
      urls.filter((u) => /\/node_modules\/(zod|@aws-sdk|@smithy|fuse-native|pino)\//.test(u)),
    ).toEqual([]);
    // The command's files are bundles, which name each module they hold in a comment.
    const modules = urls
      .filter((u) => u.includes("/dist/bin/"))
      .flatMap((u) => readFileSync(fileURLToPath(u), "utf8").match(/^\/\/ src\/\S+$/gm) ?? []);
    expect(modules).toContain("// src/cli/commands/snapshot.ts");
    expect(modules.filter((m) => /^\/\/ src\/(cow|fs|mount\/(?!mount-table))/.test(m))).toEqual([]);
  });

  it("kill -9 of the holder frees the store at once", async () => {
    s = await scratch();
    await ok("init", s.store, "--size", "64M");
    await ok("mount", s.store, s.mnt);
    const pid = lockPid(s.store)!;
    process.kill(pid, "SIGKILL");
    await until(`daemon ${pid} is dead`, () => !running(pid));
    // No waiting for a time-out and no pid to look at: the next mount takes the store.
    const out = await ok("mount", s.store, s.mnt);
    expect(out).toMatch(/mounted .* \(daemon \d+\)/);
    expect(lockPid(s.store)).not.toBe(pid);
    await ok("unmount", s.mnt);
  });

  it("a live process's pid left in the lock file does not keep the store in use", async () => {
    s = await scratch();
    await ok("init", s.store, "--size", "64M");
    // After a reboot the pid in the file may belong to anybody, alive: this process, say.
    writeFileSync(join(s.store, "lock"), `${process.pid}\n`);
    const st = JSON.parse(await ok("status", s.store, "--json")) as { mountpoint: string | null };
    expect(st.mountpoint).toBe(null);
    await ok("mount", s.store, s.mnt);
    expect(lockPid(s.store)).not.toBe(process.pid);
    await ok("unmount", s.mnt);
  });
});
