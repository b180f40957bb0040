// A restore cut short by SIGKILL of the daemon: the next mount removes the copy it was building
// (recorded before it was made), the destination is as it was, and the filesystem is sound.

import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  background,
  CLI,
  exists,
  lockPid,
  ok,
  run,
  scratchEachTest,
  until,
} from "../helpers/mounted.js";

const { fresh, mount, hold } = scratchEachTest({ checkAll: true });

const temps = (dir: string) => readdirSync(dir).filter((n) => n.startsWith(".shadowfs-restore-"));

describe("a restore cut short by a crash", () => {
  it("leaves nothing behind once the volume is mounted again", async () => {
    const { store, mnt } = await fresh();
    await ok("init", store, "--size", "2G");
    await mount(store, mnt);
    run(`head -c 768M /dev/urandom > ${mnt}/big`);
    const sum = run(`sha256sum < ${mnt}/big`);
    const gmt = (await ok("snapshot", "create", mnt)).trim();

    const r = hold(
      background(
        `exec ${process.execPath} ${CLI} restore ${mnt}/big --from ${gmt} --to ${mnt}/copy`,
      ),
    );
    await until("the restore has begun its copy", () => temps(mnt).length > 0);
    expect(existsSync(join(store, "restoring.json"))).toBe(true);
    // An fsync commits the journal, the copy's name with it: the crash leaves the copy behind.
    run(`touch ${mnt}/marker && sync ${mnt}/marker`);
    expect(temps(mnt)).toHaveLength(1);
    const pid = lockPid(store)!;
    process.kill(pid, "SIGKILL");
    await r.exited;
    await until(`daemon ${pid} is gone`, () => !exists(pid));

    await mount(store, mnt);
    expect(temps(mnt)).toEqual([]);
    expect(existsSync(join(mnt, "marker"))).toBe(true);
    expect(existsSync(join(mnt, "copy"))).toBe(false);
    expect(existsSync(join(store, "restoring.json"))).toBe(false);
    expect(run(`sha256sum < ${mnt}/big`)).toBe(sum);
    expect(readFileSync(join(store, "daemon.log"), "utf8")).toMatch(
      /removed what interrupted restores left/,
    );
    // And the volume is sound: the restore runs again to its end.
    await ok("restore", `${mnt}/big`, "--from", gmt, "--to", `${mnt}/copy`);
    expect(run(`sha256sum < ${mnt}/copy`)).toBe(sum);
    await ok("unmount", mnt);
    expect(await ok("fsck", store)).toMatch(/clean/);
  });
});
