// `npm run demo`: the main job end to end, in a temporary directory. Makes a store, mounts it,
// writes a small tree, takes a snapshot with a writer taking part, changes the tree, shows the old file through
// `.snapshots`, copies the snapshot out with rsync, checks the store and unmounts. Every step
// is the real `shadowfs` command or a real tool; nothing outside the directory is touched.

import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const CLI = resolve("dist/bin/main.js");
const dir = mkdtempSync(join(tmpdir(), "shadowfs-demo-"));
const store = join(dir, "store");
const mnt = join(dir, "mnt");
const backup = join(dir, "backup");
let mounted = false;

function step(title: string): void {
  console.log(`\n== ${title}`);
}

/** Runs a command, echoing it and its output; a failure ends the demo. */
function $(cmd: string, args: string[]): string {
  console.log(`$ ${[cmd, ...args].join(" ")}`);
  const out = execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  if (out.trim() !== "") console.log(out.trimEnd());
  return out;
}

const shadowfs = (...args: string[]) => $(process.execPath, [CLI, ...args]).trim();

let failed = false;
function expectEqual(what: string, got: string, want: string): void {
  if (got === want) return;
  failed = true;
  console.error(`MISMATCH ${what}: ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
}

try {
  step("create a 1 GiB store and mount it");
  mkdirSync(mnt);
  shadowfs("init", store, "--size", "1G", "--shadow-storage-limit", "256M");
  shadowfs("mount", store, mnt);
  mounted = true;

  step("write a small tree in production");
  mkdirSync(join(mnt, "docs/reports"), { recursive: true });
  writeFileSync(join(mnt, "docs/reports/q3.txt"), "Q3 revenue: 1,000,000\n");
  writeFileSync(join(mnt, "docs/notes.txt"), "first draft\n");
  $("ln", ["-s", "reports/q3.txt", join(mnt, "docs/latest")]);
  $("ls", ["-lR", mnt]);

  step("a writer in writers.d: it is told when to quiesce, and logs what it is told");
  const events = join(dir, "writer-events.log");
  mkdirSync(join(store, "writers.d"));
  writeFileSync(
    join(store, "writers.d", "10-app"),
    `#!/bin/bash\necho "$1 \${SHADOWFS_SNAPSHOT_NAME}" >> ${events}\n`,
    { mode: 0o755 },
  );
  shadowfs("writers", "list", mnt);

  step("take a snapshot: identify, prepare, freeze, hold and commit, thaw, post-snapshot");
  const gmt = shadowfs("snapshot", "create", mnt, "--name", "before-edit");
  $("cat", [events]);
  expectEqual(
    "writer events",
    readFileSync(events, "utf8")
      .split("\n")
      .map((l) => l.split(" ")[0])
      .join(" "),
    "identify identify prepare freeze thaw post-snapshot ",
  );
  shadowfs("snapshot", "history", mnt);

  step("change production: overwrite, delete, add");
  writeFileSync(join(mnt, "docs/reports/q3.txt"), "Q3 revenue: 0 (oops)\n");
  rmSync(join(mnt, "docs/notes.txt"));
  writeFileSync(join(mnt, "docs/new.txt"), "added after the snapshot\n");

  step("production and the snapshot side by side");
  const now = $("cat", [join(mnt, "docs/reports/q3.txt")]);
  const then = $("cat", [join(mnt, ".snapshots", gmt, "docs/reports/q3.txt")]);
  expectEqual("production", now, "Q3 revenue: 0 (oops)\n");
  expectEqual("snapshot", then, "Q3 revenue: 1,000,000\n");
  $("ls", ["-la", join(mnt, ".snapshots")]);
  $("ls", ["-l", join(mnt, ".snapshots/before-edit/docs")]);
  shadowfs("snapshot", "list", mnt);

  step("back up the snapshot with rsync while production stays writable");
  $("rsync", ["-aHAX", "--stats", `${join(mnt, ".snapshots", gmt)}/`, `${backup}/`]);
  expectEqual("backup", readFileSync(join(backup, "docs/notes.txt"), "utf8"), "first draft\n");
  const touch = spawnSync("touch", [join(mnt, ".snapshots", gmt, "docs/x")], { encoding: "utf8" });
  console.log(`$ touch .snapshots/${gmt}/docs/x\n${touch.stderr.trim()}`);

  step("storage, unmount, check");
  shadowfs("storage", mnt);
  shadowfs("unmount", mnt);
  mounted = false;
  shadowfs("fsck", store);
} catch (e) {
  failed = true;
  console.error(`demo failed: ${(e as Error).message}`);
} finally {
  if (mounted) {
    spawnSync(process.execPath, [CLI, "unmount", mnt], { stdio: "inherit" });
    spawnSync("fusermount", ["-uz", mnt]);
  }
  rmSync(dir, { recursive: true, force: true });
}
console.log(failed ? "\ndemo: FAILED" : "\ndemo: everything as expected");
process.exit(failed ? 1 : 0);
