// What `versions` and `restore` call identical, on a store opened in-process: the same inode and
// metadata is not enough when the data under it changed (as a crash between a write's data and
// its transaction leaves it), and a write to another file in the same chunk changes nothing.

import { describe, expect, it } from "vitest";
import type { Service } from "../../src/daemon/index.js";
import { restore } from "../../src/daemon/restore.js";
import { versions } from "../../src/daemon/versions.js";
import { isFsError } from "../../src/errors.js";
import { ROOT, SUPERUSER } from "../../src/fs/filesystem.js";
import { servicesEachTest } from "../helpers/service.js";

const MiB = 2 ** 20;
const openService = servicesEachTest();

/** Where each version is: "production" and the snapshots' names, newest first. */
async function where(s: Service, path: string): Promise<string[][]> {
  const r = await versions(s, path);
  return r.versions.map((v) => [
    ...(v.production ? ["production"] : []),
    ...v.snapshots.map((h) => h.alias ?? h.gmt),
  ]);
}

describe("identical versions", () => {
  it("are told apart by their data when only the data changed, and not by a chunk rewritten alike", async () => {
    const s = await openService(64 * MiB, 16 * 1024);
    const { fs } = s;
    const f = await fs.create(ROOT, "f", 0o644, SUPERUSER);
    await fs.write(f.ino, 0, Buffer.alloc(3 * 4096, "a"));
    await fs.write(f.ino, 40 * 4096, Buffer.alloc(4096, "b")); // a hole before it
    await s.create({ name: "s1" });
    await s.create({ name: "s2" });
    expect(await where(s, "f")).toEqual([["production", "s2", "s1"]]);
    const [run] = await fs.dataRuns(f.ino, 0, 4096);
    const before = await fs.getattr(f.ino);

    // f's first block written again with the bytes it holds, under the device: its chunk is
    // preserved in s2's diff area (as a write to any file in that chunk would preserve it), and
    // the bytes compared are the same.
    await s.gate.withShared(() => s.volume.write(run!.dev, Buffer.alloc(4096, "a")));
    await s.flush();
    expect(await where(s, "f")).toEqual([["production", "s2", "s1"]]);

    // New bytes in f's second block under its old metadata, as a crash after the data of a write
    // and before its transaction leaves them: another version, and a restore does not take
    // production for the snapshot's.
    await s.gate.withShared(() => s.volume.write(run!.dev + 4096, Buffer.alloc(4096, "z")));
    await s.flush();
    expect(await fs.getattr(f.ino)).toEqual(before);
    expect(await where(s, "f")).toEqual([["production"], ["s2", "s1"]]);
    const refused = await restore(s, { path: "f", from: "s1", force: false }).catch((e) => e);
    expect(isFsError(refused, "EEXIST")).toBe(true);
    const r = await restore(s, { path: "f", from: "s1", force: true });
    expect(r.keptIn).not.toBeNull();
    const back = await fs.lookup(ROOT, "f");
    expect((await fs.read(back.ino, 4096, 4096)).equals(Buffer.alloc(4096, "a"))).toBe(true);
    expect(back.size).toBe(41 * 4096);
    expect(r.bytes).toBe(4 * 4096);
    // What production held is in the snapshot the restore took; the versions say so.
    expect(await where(s, "f")).toEqual([["production"], [r.keptIn!.alias!], ["s2", "s1"]]);
  });
});
