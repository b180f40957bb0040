// fsck of a volume open for writing: it checks a snapshot taken for the purpose, so production's
// changes wait only for that snapshot's hold, not for the check; it finds damage as before and
// leaves no snapshot behind.

import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { initStore, openStore, Service } from "../../src/daemon/index.js";
import { ROOT, SUPERUSER } from "../../src/fs/filesystem.js";

const MiB = 2 ** 20;
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A store open for writing, with a file and three snapshots whose diff areas hold 8 MiB each. */
async function busyStore() {
  const dir = await mkdtemp(join(tmpdir(), "shadowfs-check-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const store = join(dir, "store");
  await initStore(store, { size: 128 * MiB });
  const { volume, fs } = await openStore(store);
  const service = new Service(store, volume, fs);
  cleanups.push(async () => {
    await service.fs.close();
    await volume.close();
  });
  const file = await fs.create(ROOT, "data", 0o644, SUPERUSER);
  const fill = (byte: number) => fs.write(file.ino, 0, Buffer.alloc(8 * MiB, byte));
  await fill(1);
  for (const byte of [2, 3, 4]) {
    await service.create();
    await fill(byte);
  }
  await service.flush();
  return { store, service, file };
}

describe("fsck of a volume open for writing", () => {
  it("lets changes through while it checks, and deletes the snapshot it took", async () => {
    const { service, file } = await busyStore();
    const before = service.list().map((s) => s.id);
    let write: Promise<number> | undefined;
    let checkEnded = false;
    let writtenWhileChecking = false;
    const checking = service.check({
      // Once the check is under way, production changes as the mount would change it.
      progress: () => {
        write ??= service.gate
          .withShared(() => service.fs.write(file.ino, 0, Buffer.from("during the check")))
          .then((n) => {
            writtenWhileChecking = !checkEnded;
            return n;
          });
      },
    });
    const report = await checking;
    checkEnded = true;
    expect(report.ok, JSON.stringify(report)).toBe(true);
    expect(report.checked).toBe("production");
    expect(await write).toBe(16);
    expect(writtenWhileChecking).toBe(true);
    expect(service.list().map((s) => s.id)).toEqual(before);
  });

  it("still finds a damaged diff area", async () => {
    const { store, service } = await busyStore();
    const oldest = service.list()[0]!;
    const data = await open(join(store, "volume", "diff", `${oldest.id}.data`), "r+");
    await data.write(Buffer.from("damage"), 0, 6, 4096 + 100);
    await data.close();
    const report = await service.check();
    expect(report.ok).toBe(false);
    expect(report.store?.problems.join("\n")).toMatch(
      new RegExp(`diff/${oldest.id}\\.data: slot \\d+ \\(chunk \\d+\\): checksum mismatch`),
    );
    expect(service.list()).toHaveLength(3);
  });
});
