// The mount helper an /etc/fstab line runs: fstab-only options are dropped, the rest applied.

import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { afterEach, expect, it } from "vitest";
import { ok, run, type Scratch, scratch } from "../helpers/mounted.js";

let s: Scratch | undefined;
afterEach(async () => {
  await s?.cleanup();
  s = undefined;
});

const HELPER = resolve("dist/bin/mount-helper.js");

it("mounts with mount(8)'s arguments and options, and refuses unknown ones", async () => {
  s = await scratch();
  await ok("init", s.store, "--size", "256M");
  const bad = spawnSync(process.execPath, [HELPER, s.store, s.mnt, "-o", "defaults,bogus"], {
    encoding: "utf8",
  });
  expect(bad.status).not.toBe(0);
  expect(bad.stderr).toMatch(/^shadowfs: unknown or malformed mount option "bogus"\n$/);
  expect(run("cat /proc/self/mountinfo")).not.toContain(` ${s.mnt} `);

  const r = spawnSync(
    process.execPath,
    [HELPER, s.store, s.mnt, "-o", "rw,noauto,nofail,_netdev,x-systemd.automount,nosuid,ro"],
    { encoding: "utf8" },
  );
  expect(r.stderr).toBe("");
  expect(r.status).toBe(0);
  const line = run("cat /proc/self/mountinfo")
    .split("\n")
    .find((l) => l.includes(` ${s!.mnt} `));
  expect(line).toMatch(/ ro,nosuid,/);
  expect(line).toContain(` - fuse.shadowfs ${s.store} `);
  await ok("unmount", s.mnt);
});
