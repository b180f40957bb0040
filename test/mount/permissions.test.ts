// Users sharing a mount (allow_other, default_permissions) as they share ext4: the same shell
// steps by two users and a group member on a plain ext4 directory and on the mount give the same
// exit codes, owners, groups and modes; a snapshot shows the same and refuses the same.

import { type ChildProcess, fork, spawnSync } from "node:child_process";
import { once } from "node:events";
import { chmodSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { mountsUnder, ok, scratchEachTest } from "../helpers/mounted.js";

const BARE = fileURLToPath(new URL("../helpers/bare-mount.ts", import.meta.url));

const CAN_RUN = process.getuid?.() === 0 && spawnSync("setpriv", ["--version"]).status === 0;

const USERS = {
  a: { uid: 65534, gid: 65534, groups: [65534] },
  b: { uid: 65533, gid: 65533, groups: [65533] },
  member: { uid: 65533, gid: 65533, groups: [65533, 65534] },
};
type User = keyof typeof USERS;

/** r CMD: runs it and says its exit code; s PATH: owner, group, mode; w PATH TEXT: appends. */
const PRELUDE = `
r() { "$@" >/dev/null 2>&1; echo "$* => $?"; }
s() { for p in "$@"; do stat -c '%n %u:%g %a' "$p" 2>/dev/null || echo "$p: no stat"; done; }
w() { ( echo "$2" >> "$1" ) 2>/dev/null; echo "append $1 => $?"; }
umask 022
`;

const STEPS: [User, string][] = [
  [
    "a",
    `r touch a; r mkdir d; s a d
     r touch a; r chmod 600 a; s a
     r mkdir g; r chmod 2777 g; s g
     umask 077; r touch private; s private; umask 022
     w s data; r chmod 4777 s; s s
     w t x; s t
     w gx x; r chmod 2777 gx; s gx
     r truncate -s 0 a; r touch -d @5 a; s a`,
  ],
  [
    "b",
    `r touch b; s b
     r cat a; r rm -f a; r mv a a2; r touch -d @5 a; r touch a; r chmod 777 a; s a
     r touch g/x; r mkdir g/y; s g/x g/y
     w s more; s s
     w gx more; s gx
     r cat private
     w t more; r truncate -s 0 t; s t
     r ln t tl; r ln b bl; s bl
     r chown 65534 b; r chgrp 65534 b; r chgrp 65533 b; s b
     r chmod 4755 b; s b
     r mkdir -m 755 bd; s bd
     r touch -d @9 b; s b`,
  ],
  [
    "member",
    `r touch g/m; r mkdir g/md; s g/m g/md
     w t member; r cat t
     r chgrp 65534 b; s b
     r chmod 2755 b; s b`,
  ],
  [
    "a",
    `r rm -f b; r rm -rf bd; r mv b b3; r mv g/x g/x2
     r chmod 644 t; r touch -d @7 t; s t
     r rmdir d; s d`,
  ],
];

/** What users may and may not do in a tree that does not change (a snapshot, say). */
const READS: [User, string][] = [
  ["a", "r cat a; r cat private; r ls g; s a private g g/y t s"],
  ["b", "r cat a; r cat private; r cat t; r ls g; r ls g/y; s a private g/y"],
  ["member", "r cat t; r ls g"],
];

function as(user: User, dir: string, script: string): string {
  const u = USERS[user];
  const r = spawnSync(
    "setpriv",
    [
      `--reuid=${u.uid}`,
      `--regid=${u.gid}`,
      `--groups=${u.groups.join(",")}`,
      "--",
      "bash",
      "-c",
      PRELUDE + script,
    ],
    { cwd: dir, encoding: "utf8" },
  );
  if (r.status !== 0) throw new Error(`steps as ${user} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

const runAll = (dir: string, steps: [User, string][]) =>
  steps.map(([user, script]) => `# ${user}\n${as(user, dir, script)}`).join("");

describe.skipIf(!CAN_RUN)("users sharing a mount with allow_other,default_permissions", () => {
  const t = scratchEachTest({ checkEach: true, checkAll: true });

  it("own what they make, refuse each other as ext4 does, and a snapshot keeps both", async () => {
    const s = await t.fresh();
    chmodSync(s.dir, 0o755);
    const ext4 = join(s.dir, "ext4");
    mkdirSync(ext4);
    chmodSync(ext4, 0o1777);
    await ok("init", s.store, "--size", "256M");
    await t.mount(s.store, s.mnt, "-o", "allow_other,default_permissions");
    chmodSync(s.mnt, 0o1777);

    const onExt4 = runAll(ext4, STEPS);
    const onMount = runAll(s.mnt, STEPS);
    if (process.env.PERM_DEBUG) console.log(onMount);
    expect(onMount).toEqual(onExt4);
    // The steps test something: owners are the users', and some steps were refused.
    expect(onExt4).toContain("a 65534:65534 644");
    expect(onExt4).toContain("b 65533:65533 644");
    expect(onExt4).toMatch(/=> 1/);
    expect(onExt4).toContain("s 65534:65534 777"); // b's append cleared set-user-ID

    const name = (await ok("snapshot", "create", s.mnt)).trim().split("\n").at(-1)!.trim();
    const snap = join(s.mnt, ".snapshots", name);
    expect(readdirSync(snap).sort()).toEqual(readdirSync(ext4).sort());
    const stat = (dir: string) =>
      spawnSync("bash", ["-c", "stat -c '%n %u:%g %a' $(find . | sort)"], {
        cwd: dir,
        encoding: "utf8",
      }).stdout;
    expect(stat(snap)).toEqual(stat(ext4));
    const reads = runAll(ext4, READS);
    expect(runAll(snap, READS)).toEqual(reads);
    expect(reads).toContain("cat private => 1");
    expect(as("b", snap, "r touch b3; r rm -f t")).toBe("touch b3 => 1\nrm -f t => 1\n");

    const exposed = join(s.dir, "exposed");
    mkdirSync(exposed);
    await ok("snapshot", "expose", s.mnt, name, exposed);
    try {
      expect(stat(exposed)).toEqual(stat(ext4));
      expect(runAll(exposed, READS)).toEqual(reads);
    } finally {
      await ok("snapshot", "unexpose", exposed);
    }
  });
});

describe.skipIf(!CAN_RUN)("users sharing a mount without default_permissions", () => {
  const t = scratchEachTest({ checkEach: true });
  let child: ChildProcess | undefined;
  let mnt: string | undefined;

  afterEach(async () => {
    if (mnt) spawnSync("fusermount", ["-uz", mnt]);
    const c = child;
    child = undefined;
    if (c && c.exitCode === null && c.signalCode === null) {
      const exited = once(c, "exit");
      c.kill("SIGKILL");
      await exited;
    }
    if (mnt) expect(await mountsUnder(mnt)).toEqual([]);
    mnt = undefined;
  });

  it("are refused by FuseOps itself as ext4 refuses them", async () => {
    const s = await t.fresh();
    chmodSync(s.dir, 0o755);
    const ext4 = join(s.dir, "ext4");
    mkdirSync(ext4);
    chmodSync(ext4, 0o1777);
    mnt = s.mnt;
    const c = fork(BARE, [s.mnt], {
      execArgv: ["--import", "tsx"],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    child = c;
    const [m] = (await once(c, "message")) as [{ type: string; message?: string }];
    if (m.type !== "ready") throw new Error(`bare mount: ${m.message}`);
    expect(readFileSync("/proc/self/mounts", "utf8")).not.toMatch(
      new RegExp(`${s.mnt} .*default_permissions`),
    );

    const onExt4 = runAll(ext4, STEPS);
    expect(runAll(s.mnt, STEPS)).toEqual(onExt4);
    expect(runAll(s.mnt, READS)).toEqual(runAll(ext4, READS));
  });
});
