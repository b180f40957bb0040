// Windows "Previous Versions" through Samba: Debian's smbd with vfs_shadow_copy2, configured with
// the share docs/samba.md gives, over a real mount; smbclient lists and reads old versions.

import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { mounted, mountsUnder, ok, run, type Scratch } from "../helpers/mounted.js";
import { type Smbd, sambaMissing, startSmbd } from "../helpers/samba.js";

let s: Scratch | undefined;
let smbd: Smbd | undefined;
afterEach(async () => {
  // smbd first: its children hold files of the mount open.
  await smbd?.stop();
  smbd = undefined;
  const done = s;
  s = undefined;
  await done?.cleanup();
  if (done) expect(await mountsUnder(done.dir)).toEqual([]);
});

/** The share section of docs/samba.md (the ```ini block with vfs_shadow_copy2), at `path`. */
async function documentedShare(name: string, path: string): Promise<string> {
  const doc = await readFile("docs/samba.md", "utf8");
  const block = [...doc.matchAll(/```ini\n([\s\S]*?)```/g)]
    .map((m) => m[1]!)
    .find((b) => b.includes("vfs objects = shadow_copy2"));
  if (!block) throw new Error("docs/samba.md has no ```ini block with vfs objects = shadow_copy2");
  const lines = block.trimEnd().split("\n");
  expect(lines[0]).toMatch(/^\[\w+\]$/);
  expect(lines.filter((l) => /^\s*path = /.test(l))).toHaveLength(1);
  return [
    `[${name}]`,
    ...lines.slice(1).map((l) => (/^\s*path = /.test(l) ? `   path = ${path}` : l)),
    "   guest ok = yes",
    "",
  ].join("\n");
}

/** `shadowfs snapshot create`: its `@GMT-…` name (the daemon gives each second one at most). */
const snapshot = async (mnt: string) => (await ok("snapshot", "create", mnt)).trim();

/** A file's version as `allinfo` shows it under a snapshot's name. */
interface Listed {
  name: string;
  /** Absent when the file is not in that snapshot. */
  size?: number;
  /** `YYYY HH:MM:SS` of its write time (UTC), when there. */
  written?: string;
}

/** `allinfo`'s snapshots, in its order, each with the file's size and write time there. */
function allinfoSnapshots(stdout: string): Listed[] {
  const out: Listed[] = [];
  for (const line of stdout.split("\n")) {
    const last = out[out.length - 1];
    const time = /^write_time:\s+\w{3} \w{3} [ \d]\d (\d\d:\d\d:\d\d) (\d{4}) UTC$/.exec(line);
    const size = /^size: (\d+)$/.exec(line);
    if (/^@GMT-/.test(line)) out.push({ name: line.trim() });
    else if (last && time) last.written = `${time[2]} ${time[1]}`;
    else if (last && size) last.size = Number(size[1]);
  }
  return out;
}

it("allinfo lists the snapshots holding a file, and old versions are read by @GMT path", async () => {
  const missing = sambaMissing();
  if (missing) throw new Error(missing);
  s = await mounted("256M", "-o", "allow_other");
  const { mnt, dir } = s;
  // smbd enters the share as the guest (nobody): it needs search permission down to the mount,
  // and, to show that a snapshot refuses it for being one, write permission in its root.
  run(`chmod 755 ${dir} && chmod 1777 ${mnt} && mkdir ${mnt}/projects`);
  const at = (file: string, time: string) => run(`touch -d '${time}' ${mnt}/${file}`);
  await writeFile(join(mnt, "projects", "plan.txt"), "plan A\n");
  at("projects/plan.txt", "2020-01-02 03:04:05Z");

  const before = await snapshot(mnt); // report.txt does not exist yet
  await writeFile(join(mnt, "report.txt"), "version one\n");
  at("report.txt", "2021-03-04 05:06:07Z");
  const first = await snapshot(mnt);
  await writeFile(join(mnt, "report.txt"), "version two, longer\n");
  at("report.txt", "2022-05-06 07:08:09Z");
  await writeFile(join(mnt, "projects", "plan.txt"), "plan B, revised\n");
  at("projects/plan.txt", "2022-05-06 07:08:10Z");
  const second = await snapshot(mnt);
  await writeFile(join(mnt, "report.txt"), "version three!\n");

  // What smbd finds there: `.snapshots` holds exactly the snapshots, by @GMT name, and is
  // not listed in the root.
  const names = [before, first, second];
  expect(new Set(names).size).toBe(3);
  expect(run(`ls -A ${mnt}/.snapshots`).split("\n").filter(Boolean)).toEqual(names);
  expect(run(`ls -A ${mnt}`).split("\n")).not.toContain(".snapshots");

  const shares =
    (await documentedShare("shadow", mnt)) +
    (await documentedShare("projects", join(mnt, "projects")));
  smbd = await startSmbd(join(dir, "samba"), shares);
  const client = (share: string, commands: string) => {
    const r = smbd!.client(share, commands, dir);
    return { ...r, all: `${r.stdout}${r.stderr}\nsmbd:\n${smbd!.output()}` };
  };
  // smbclient exits 0 even when a command fails: each step is judged by what it printed or got.
  const got = (file: string) => readFile(join(dir, file), "utf8").catch(() => `(no ${file})`);

  const now = client("shadow", "get report.txt now.txt");
  expect(await got("now.txt"), now.all).toBe("version three!\n");

  // Every snapshot, newest first (shadow:sort = desc), with the file's size and write time in
  // the two that hold it; none in the one taken before it existed.
  const info = client("shadow", "allinfo report.txt");
  expect(allinfoSnapshots(info.stdout), info.all).toEqual([
    { name: second, size: 20, written: "2022 07:08:09" },
    { name: first, size: 12, written: "2021 05:06:07" },
    { name: before },
  ]);
  expect(info.stderr).toContain(
    `pathinfo(${before}\\report.txt) failed: NT_STATUS_OBJECT_NAME_NOT_FOUND`,
  );

  // Old versions by their @GMT path; nothing where the file did not exist yet.
  const old = client(
    "shadow",
    `get "${first}\\report.txt" v1.txt; get "${second}\\report.txt" v2.txt`,
  );
  expect(await got("v1.txt"), old.all).toBe("version one\n");
  expect(await got("v2.txt"), old.all).toBe("version two, longer\n");
  const none = client("shadow", `get "${before}\\report.txt" v0.txt`);
  expect(none.stdout + none.stderr).toContain("NT_STATUS_OBJECT_NAME_NOT_FOUND");

  // A snapshot takes no change, where production (the same directory, world-writable) does.
  // (Samba 4.17 answers with a different status for each: see docs/samba.md.)
  await writeFile(join(dir, "local.txt"), "from a client\n");
  const put = client(
    "shadow",
    [
      `put local.txt "${first}\\new.txt"`,
      `put local.txt "${first}\\report.txt"`,
      `del "${first}\\report.txt"`,
      `mkdir "${first}\\d"`,
      "put local.txt new.txt",
    ].join("; "),
  );
  const refused = put.stdout + put.stderr;
  for (const what of [
    `opening remote file \\${first}\\new.txt`,
    `opening remote file \\${first}\\report.txt`,
    `deleting remote file \\${first}\\report.txt`,
    `making remote directory \\${first}\\d`,
  ])
    expect(refused, put.all).toMatch(
      new RegExp(`^NT_STATUS_\\w+ ${what.replace(/[\\.]/g, "\\$&")}$`, "m"),
    );
  expect(await readFile(join(mnt, "new.txt"), "utf8"), put.all).toBe("from a client\n");
  expect(run(`ls -A ${mnt}/.snapshots/${first}`).split("\n").filter(Boolean)).toEqual([
    "projects",
    "report.txt",
  ]);
  expect(await readFile(join(mnt, ".snapshots", first, "report.txt"), "utf8")).toBe(
    "version one\n",
  );

  // `.snapshots` is vetoed: not listed, not reachable by its name through the share.
  const ls = client("shadow", "ls; ls .snapshots\\*");
  expect(ls.stdout, ls.all).toMatch(/^ {2}report\.txt /m);
  expect(ls.stdout).not.toMatch(/^ {2}\.snapshots /m);
  expect(ls.stdout + ls.stderr).toContain(
    "NT_STATUS_OBJECT_NAME_NOT_FOUND listing \\.snapshots\\*",
  );

  // A share on a directory below the mount finds the same snapshots (shadow_copy2 finds the
  // mount's root by itself, and the snapshot's copy of the directory below it).
  const sub = client("projects", "allinfo plan.txt");
  expect(allinfoSnapshots(sub.stdout), sub.all).toEqual([
    { name: second, size: 16, written: "2022 07:08:10" },
    { name: first, size: 7, written: "2020 03:04:05" },
    { name: before, size: 7, written: "2020 03:04:05" },
  ]);
  const plan = client("projects", `get "${first}\\plan.txt" planA.txt`);
  expect(await got("planA.txt"), plan.all).toBe("plan A\n");
});
