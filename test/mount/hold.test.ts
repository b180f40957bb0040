// Flush and hold through a real mount: while a snapshot's provider holds the volume, changes
// made by other processes wait and then complete with the right result; reads go on.

import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { initStore, openStore, Service } from "../../src/daemon/index.js";
import { FileSystem, SUPERUSER } from "../../src/fs/filesystem.js";
import { FuseMount, FuseOps, View } from "../../src/mount/index.js";
import { until } from "../helpers/mounted.js";

const log = { error: (fields: object, msg: string) => console.error(msg, fields) };
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A shell command in its own process (the mount is served by this one: no sync I/O here). */
function shell(command: string): { done: Promise<number>; exited: () => boolean } {
  const child = spawn("bash", ["-c", command], { stdio: "ignore" });
  let exited = false;
  const done = new Promise<number>((r) =>
    child.on("exit", (code) => {
      exited = true;
      r(code ?? -1);
    }),
  );
  cleanups.push(async () => {
    if (!exited) child.kill("SIGKILL");
  });
  return { done, exited: () => exited };
}

it("holds changes until the snapshot is committed, not reads; they then complete", async () => {
  const dir = await mkdtemp(join(tmpdir(), "shadowfs-hold-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const store = join(dir, "store");
  const mnt = join(dir, "mnt");
  await initStore(store, { size: 64 * 2 ** 20 });
  const { volume, fs } = await openStore(store);
  const service = new Service(store, volume, fs);
  cleanups.push(async () => {
    await fs.close();
    await volume.close();
  });
  await (await import("node:fs/promises")).mkdir(mnt);
  const ops = new FuseOps({
    root: new View(fs, "production"),
    gate: service.gate,
    log,
    caller: () => SUPERUSER,
  });
  const mount = await FuseMount.mount({
    mountpoint: mnt,
    source: store,
    ops: ops.operations(),
    options: [],
  });
  cleanups.push(() => mount.unmount());

  // Each change in a directory of its own: the kernel lets one change at a time into a directory.
  const setup = `cd ${mnt} && echo before > r && mkdir a b c e && echo old > a/w && mkdir e/gone && echo x > c/r`;
  expect(await shell(setup).done).toBe(0);
  const provider = service.provider();
  await provider.hold();
  let released = false;
  cleanups.push(async () => {
    if (!released) provider.release();
  });

  const changes = [
    shell(`echo new > ${mnt}/a/w`),
    shell(`mkdir ${mnt}/b/d`),
    shell(`mv ${mnt}/c/r ${mnt}/c/r2`),
    shell(`rmdir ${mnt}/e/gone`),
  ];
  await until("every change waits at the gate", () => service.gate.queued >= changes.length);
  const read = shell(`test "$(cat ${mnt}/r)" = before && ls ${mnt} > ${dir}/listing`);
  expect(await read.done).toBe(0);
  expect(changes.filter((c) => c.exited())).toEqual([]);

  const snap = await provider.commit({ setId: "test-set" });
  provider.release();
  released = true;
  expect(await Promise.all(changes.map((c) => c.done))).toEqual([0, 0, 0, 0]);

  expect((await readFile(join(dir, "listing"), "utf8")).split("\n")).toEqual([
    "a",
    "b",
    "c",
    "e",
    "r",
    "",
  ]);
  const after = `cd ${mnt} && test "$(cat a/w)" = new && test -d b/d && test "$(cat c/r2)" = x && ! test -e c/r && ! test -e e/gone`;
  expect(await shell(after).done).toBe(0);
  // The snapshot holds the volume as it was before any held change.
  const old = await FileSystem.open(volume.snapshotDevice(snap.id));
  const names = async (parent: string) => {
    const ino = (await old.lookup(1, parent)).ino;
    return (await old.readdir(ino, 0n, 100))
      .map((e) => e.name.toString())
      .filter((n) => n[0] !== ".");
  };
  expect([await names("a"), await names("b"), await names("c"), await names("e")]).toEqual([
    ["w"],
    [],
    ["r"],
    ["gone"],
  ]);
  expect(volume.snapshots()[0]?.setId).toBe("test-set");
});
