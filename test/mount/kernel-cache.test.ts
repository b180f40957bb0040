// What the kernel keeps of a mount, through real tools on a real mount: a file's data stays in
// the page cache across opens where nothing can change it behind the kernel's back (a file with
// one name, a snapshot), and what the daemon changes itself (restore, revert, snapshots under
// `.snapshots`) is seen at once, by root and by another user, though names, absent names and
// attributes are kept for a minute.

import { spawnSync } from "node:child_process";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ok, run, type Scratch, scratchEachTest, sh } from "../helpers/mounted.js";

const NOBODY = 65534;
const CAN_SETPRIV = process.getuid?.() === 0 && spawnSync("setpriv", ["--version"]).status === 0;

/** Bytes of `path` in the page cache, as fincore counts them. */
const resident = (path: string) =>
  Number(run(`fincore --bytes --noheadings --output RES ${JSON.stringify(path)}`).trim());

/** `command` as user nobody (or as root where setpriv cannot run). */
const asNobody = (command: string) =>
  CAN_SETPRIV
    ? sh(`setpriv --reuid=${NOBODY} --regid=${NOBODY} --clear-groups -- bash -c ${q(command)}`)
    : sh(command);
const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** One MiB of `byte`, so that a stale page cache would show other bytes at the same size. */
const mib = (byte: string) => Buffer.alloc(1 << 20, byte);

describe("the kernel's cache of a mount", () => {
  const t = scratchEachTest({ checkEach: true, checkAll: true });

  async function mount(): Promise<Scratch> {
    const s = await t.fresh();
    chmodSync(s.dir, 0o755);
    await ok("init", s.store, "--size", "256M");
    await t.mount(s.store, s.mnt, "-o", "allow_other,default_permissions");
    chmodSync(s.mnt, 0o777);
    return s;
  }
  const snapshot = async (s: Scratch, ...args: string[]) =>
    (await ok("snapshot", "create", s.mnt, ...args)).trim().split("\n").at(-1)!.trim();

  it("keeps a file's data across opens, but not a hard-linked file's; a snapshot's always", async () => {
    const s = await mount();
    const f = join(s.mnt, "f");
    writeFileSync(f, mib("a"));
    run(`cat ${f} >/dev/null`);
    // fincore opens the file: the pages are still there after that open.
    expect(resident(f)).toBe(1 << 20);
    expect(resident(f)).toBe(1 << 20);

    const linked = join(s.mnt, "linked");
    writeFileSync(linked, mib("b"));
    run(`ln ${linked} ${join(s.mnt, "other-name")}`);
    run(`cat ${linked} >/dev/null`);
    // libfuse gives each name a kernel inode: a write through one would not reach the other's
    // pages, so an open drops them.
    expect(resident(linked)).toBe(0);

    const name = await snapshot(s);
    const inSnap = join(s.mnt, ".snapshots", name, "f");
    run(`cat ${inSnap} >/dev/null`);
    expect(resident(inSnap)).toBe(1 << 20);
  });

  it("a restore over a cached file is seen at once: its bytes, size and inode", async () => {
    const s = await mount();
    const f = join(s.mnt, "f");
    writeFileSync(f, mib("o"));
    const name = await snapshot(s);
    writeFileSync(f, mib("n"));
    expect(run(`head -c 4 ${f}`)).toBe("nnnn");
    expect(resident(f)).toBe(1 << 20);
    const before = run(`stat -c '%i %s' ${f}`);

    await ok("restore", f, "--from", name, "--force");
    // The same size, other bytes: only the invalidation can tell the kernel.
    expect(run(`head -c 4 ${f}`)).toBe("oooo");
    expect(run(`tail -c 4 ${f}`)).toBe("oooo");
    expect(run(`stat -c '%i %s' ${f}`)).not.toBe(before);
    expect(asNobody(`head -c 4 ${f}`).stdout).toBe("oooo");
  });

  it("a restored name the kernel knew as absent, or whose attributes it kept, is seen at once", async () => {
    const s = await mount();
    const dir = join(s.mnt, "d");
    run(
      `mkdir ${dir} && echo kept > ${dir}/gone && chmod 640 ${dir}/gone && echo one > ${dir}/mode`,
    );
    const name = await snapshot(s);
    run(`rm ${dir}/gone && chmod 600 ${dir}/mode`);
    // Absent, and known so by the kernel (negative_timeout), as root and as nobody.
    expect(sh(`stat ${dir}/gone`).code).not.toBe(0);
    expect(asNobody(`stat ${dir}/gone`).code).not.toBe(0);
    expect(run(`stat -c %a ${dir}/mode`).trim()).toBe("600");

    await ok("restore", `${dir}/gone`, "--from", name);
    await ok("restore", `${dir}/mode`, "--from", name, "--force");
    expect(run(`cat ${dir}/gone`)).toBe("kept\n");
    expect(run(`stat -c %a ${dir}/gone`).trim()).toBe("640");
    expect(run(`ls ${dir}`).split("\n").filter(Boolean).sort()).toEqual(["gone", "mode"]);
    expect(run(`stat -c %a ${dir}/mode`).trim()).toBe("644");
    expect(asNobody(`stat -c %a ${dir}/gone`).stdout.trim()).toBe("640");
    expect(asNobody(`cat ${dir}/mode`).stdout).toBe("one\n");
  });

  it("a revert is seen at once: names made since are gone, names removed since are back", async () => {
    const s = await mount();
    run(`echo v1 > ${s.mnt}/f && echo same > ${s.mnt}/removed && mkdir ${s.mnt}/d`);
    run(`echo deep > ${s.mnt}/d/deep`);
    const name = await snapshot(s);
    run(
      `echo v2-longer > ${s.mnt}/f && rm ${s.mnt}/removed ${s.mnt}/d/deep && echo new > ${s.mnt}/made`,
    );
    // The kernel now holds the new state: data, attributes, present and absent names.
    expect(run(`cat ${s.mnt}/f ${s.mnt}/made`)).toBe("v2-longer\nnew\n");
    expect(sh(`stat ${s.mnt}/removed`).code).not.toBe(0);
    expect(sh(`stat ${s.mnt}/d/deep`).code).not.toBe(0);

    await ok("snapshot", "revert", s.mnt, name, "--discard-newer");
    expect(run(`cat ${s.mnt}/f`)).toBe("v1\n");
    expect(run(`stat -c %s ${s.mnt}/f`).trim()).toBe("3");
    expect(sh(`stat ${s.mnt}/made`).code).not.toBe(0);
    expect(run(`cat ${s.mnt}/removed ${s.mnt}/d/deep`)).toBe("same\ndeep\n");
    expect(asNobody(`cat ${s.mnt}/d/deep`).stdout).toBe("deep\n");
  });

  it("a snapshot taken or deleted shows under .snapshots at once", async () => {
    const s = await mount();
    const named = join(s.mnt, ".snapshots", "mine");
    expect(sh(`ls ${named}`).code).not.toBe(0);
    run(`echo x > ${s.mnt}/x`);
    const gmt = await snapshot(s, "--name", "mine");
    expect(run(`cat ${named}/x`)).toBe("x\n");
    expect(run(`ls ${s.mnt}/.snapshots`).split("\n")).toContain(gmt);
    await ok("snapshot", "delete", s.mnt, "mine");
    expect(sh(`ls ${named}`).code).not.toBe(0);
    expect(sh(`stat ${join(s.mnt, ".snapshots", gmt)}`).code).not.toBe(0);
  });
});
