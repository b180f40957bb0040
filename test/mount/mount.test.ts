// The mounted volume through real tools: production read/write, snapshots under the hidden
// `.snapshots` directory and exposed on their own mount point, all read-only.

import { spawn } from "node:child_process";
import { once } from "node:events";
import { readdirSync, readFileSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { getPriority } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { mountTable, READ_AHEAD_KB, REQUEST_THREAD_BOOST } from "../../src/mount/index.js";
import { lockPid, mounted, ok, run, type Scratch, sh } from "../helpers/mounted.js";

let s: Scratch | undefined;
afterEach(async () => {
  await s?.cleanup();
  s = undefined;
});

/**
 * Out of the page cache, then 400 reads by another process at random offsets of two files of
 * 6 MB (4 KiB at 4 KiB boundaries, and odd sizes anywhere): how many differ.
 */
function differences(a: string, b: string): number {
  run(`dd if=${a} iflag=nocache count=0 status=none`);
  const script = `
    const fs = require("node:fs");
    const [a, b] = process.argv.slice(1).map((p) => fs.openSync(p, "r"));
    let seed = 7, bad = 0;
    const rnd = (n) => ((seed = (seed * 1103515245 + 12345) % 2147483648), seed % n);
    for (let i = 0; i < 400; i++) {
      const len = [1, 100, 4096, 4096, 5000, 65536, 131072][rnd(7)];
      const at = i % 2 ? rnd(6000000) : rnd(1464) * 4096;
      const x = Buffer.alloc(len), y = Buffer.alloc(len);
      const n = fs.readSync(a, x, 0, len, at), m = fs.readSync(b, y, 0, len, at);
      if (n !== m || !x.equals(y)) bad++;
    }
    console.log(bad);`;
  return Number(run(`node -e '${script}' ${a} ${b}`).trim());
}

/** A tree with every kind of thing rsync -aHAX carries. */
function buildTree(root: string): void {
  run(
    [
      "mkdir -p a/b/c empty 'sp ace' deep/1/2/3/4",
      "echo hello > a/hello.txt",
      "head -c 1048577 /dev/urandom > a/b/random.bin",
      "seq 1 20000 > a/b/c/numbers",
      "ln a/hello.txt a/b/hardlink",
      "ln -s ../hello.txt a/b/symlink",
      "ln -s /nonexistent/target dangling",
      "mkfifo fifo",
      "printf 'x%.0s' $(seq 1 300) > 'sp ace/name with spaces'",
      "truncate -s 5M sparse && printf end >> sparse",
      "setfattr -n user.colour -v blue a/hello.txt",
      "setfattr -n user.empty a/b/random.bin",
      "chmod 640 a/b/c/numbers && chmod 1777 empty && chmod 2750 deep",
      // Old times everywhere, so that a copy must set them (rsync leaves same-second ones).
      "find . -exec touch -h -d '2005-06-07 08:09:10.111111111' {} +",
      "touch -h -d '2001-02-03 04:05:06.123456789' a/b/symlink",
      "touch -d '1999-12-31 23:59:59.987654321' a/b/c/numbers deep/1/2/3/4",
    ].join(" && "),
    root,
  );
}

/**
 * Every entry's path, type, mode, link count, size, owner and mtime (nanoseconds). Directory
 * sizes are each filesystem's own; `rsync` does not carry symlink times (`linkTimes: false`).
 */
const listing = (dir: string, linkTimes = true) =>
  run("find . -printf '%p\\t%y\\t%m\\t%n\\t%s\\t%U\\t%G\\t%T@\\t%l\\n' | sort", dir)
    .split("\n")
    .map((line) => {
      const f = line.split("\t");
      if (f[1] === "d") f[4] = "";
      if (f[0] === ".") f[3] = f[7] = "";
      if (f[1] === "l" && !linkTimes) f[7] = "";
      return f.join("\t");
    });

/** `diff -r` of two trees; fifos are compared by `listing`, diff only names them. */
/** The kernel's read-ahead for the mount on `mnt`, in KiB. */
async function readAhead(mnt: string): Promise<number> {
  const dev = (await mountTable()).find((m) => m.mountpoint === mnt)?.device;
  return Number(await readFile(`/sys/class/bdi/${dev}/read_ahead_kb`, "utf8"));
}

const diff = (a: string, b: string) =>
  sh(`diff -r --no-dereference ${a} ${b}`)
    .stdout.split("\n")
    .filter((l) => l !== "" && !/ is a fifo while file .* is a fifo$/.test(l));

const xattrs = (dir: string) =>
  run(
    "find . -print0 | sort -z | xargs -0 getfattr -h -d -m - --absolute-names 2>/dev/null || true",
    dir,
  );

describe("mounted volume", () => {
  it("keeps a snapshot exact while production changes, hidden, read-only and exposable", async () => {
    s = await mounted();
    const { mnt, dir } = s;
    const ref = join(dir, "ref");
    const out = join(dir, "out");
    const exp = join(dir, "exp");
    await mkdir(exp);
    buildTree(mnt);
    run(`cp -a ${mnt}/. ${ref}/`);
    const gmt = (await ok("snapshot", "create", mnt, "--name", "before")).trim();
    expect(gmt).toMatch(/^@GMT-\d{4}\.\d\d\.\d\d-\d\d\.\d\d\.\d\d$/);
    const snap = join(mnt, ".snapshots", gmt);
    const inode = run("stat -c %i a/b/c/numbers", mnt);

    // Heavy changes in production.
    run(
      [
        "head -c 300000 /dev/urandom | dd of=a/b/random.bin bs=4096 seek=3 conv=notrunc status=none",
        "echo more >> a/hello.txt",
        "rm a/b/hardlink fifo",
        "mv a/b/c moved && mv 'sp ace' a/",
        "rm -r deep",
        "truncate -s 10 sparse",
        "chmod 600 a/hello.txt && setfattr -x user.colour a/hello.txt",
        "for i in $(seq 1 50); do echo $i > new$i; done",
        "mkdir -p newdir/x && touch newdir/x/y",
      ].join(" && "),
      mnt,
    );

    // The snapshot holds the tree as it was: contents, metadata, links, xattrs.
    expect(diff(ref, snap)).toEqual([]);
    expect(listing(snap)).toEqual(listing(ref));
    expect(xattrs(snap)).toBe(xattrs(ref));
    expect(run(`stat -c %i ${snap}/a/b/c/numbers`)).toBe(inode);
    expect(run(`stat -c %i ${snap}/a/hello.txt`)).toBe(run("stat -c %i a/hello.txt", mnt));
    expect(run(`stat -c %h ${snap}/a/hello.txt`).trim()).toBe("2");
    // The alias resolves to the same snapshot.
    expect(diff(ref, `${mnt}/.snapshots/before`)).toEqual([]);

    // rsync -aHAX out of the snapshot reproduces it, hard links included.
    run(`rsync -aHAX ${snap}/ ${out}/`);
    expect(listing(out, false)).toEqual(listing(ref, false));
    expect(xattrs(out)).toBe(xattrs(ref));
    expect(run(`stat -c %i ${out}/a/hello.txt`)).toBe(run(`stat -c %i ${out}/a/b/hardlink`));

    // Hidden from listings and tree walks, reachable by path.
    expect(run("ls -a", mnt).split("\n")).not.toContain(".snapshots");
    expect(run("find . -name '@GMT*' -o -name .snapshots", mnt)).toBe("");
    expect(run(`ls ${mnt}/.snapshots`).trim()).toBe(gmt);
    const du = Number(run("du -sk .", mnt).split("\t")[0]);
    expect(du).toBeLessThan(4096); // the snapshot's megabytes are not counted

    // Nothing in a snapshot changes, and `.snapshots` itself cannot be changed.
    for (const cmd of [
      `touch ${snap}/a/hello.txt`,
      `touch ${snap}/newfile`,
      `rm ${snap}/a/hello.txt`,
      `mkdir ${snap}/x`,
      `chmod 777 ${snap}/a`,
      `setfattr -n user.x -v y ${snap}/a/hello.txt`,
      `echo x >> ${snap}/a/hello.txt`,
      `mv ${snap}/a ${snap}/b`,
      `ln ${snap}/a/hello.txt ${snap}/a/l2`,
      `rmdir ${mnt}/.snapshots/${gmt}`,
      `mkdir ${mnt}/.snapshots/x`,
    ]) {
      const r = sh(cmd);
      expect(r.code, cmd).not.toBe(0);
      expect(r.stderr, cmd).toMatch(/Read-only file system/);
    }
    for (const cmd of [
      `rmdir ${mnt}/.snapshots`,
      `mv ${mnt}/.snapshots ${mnt}/x`,
      `mv ${mnt}/new1 ${mnt}/.snapshots`,
      `mkdir ${mnt}/.snapshots`,
    ])
      expect(sh(cmd).code, cmd).not.toBe(0);
    expect(sh(`ln ${mnt}/new1 ${snap}/x`).code).not.toBe(0);

    // Exposed on its own mount point: the same tree, read-only.
    await ok("snapshot", "expose", mnt, gmt, exp);
    expect(await readAhead(exp)).toBe(READ_AHEAD_KB);
    expect(diff(ref, exp)).toEqual([]);
    expect(listing(exp)).toEqual(listing(ref));
    expect(sh(`touch ${exp}/a/hello.txt`).stderr).toMatch(/Read-only file system/);
    await ok("snapshot", "unexpose", exp);
    expect(run("cat /proc/self/mountinfo")).not.toContain(` ${exp} `);
  });

  it("keeps times exactly: nanoseconds, touch -a / -m, cp -p, a second rsync copies nothing", async () => {
    s = await mounted();
    const { mnt, dir } = s;
    run("touch -d '2001-02-03 04:05:06.123456789' f", mnt);
    expect(run("stat -c '%x|%y' f", mnt).trim()).toBe(
      "2001-02-03 04:05:06.123456789 +0000|2001-02-03 04:05:06.123456789 +0000",
    );
    // Before 1970, and past 2106 (seconds beyond 32 bits).
    for (const t of ["1969-12-31 23:59:58.250000000", "2200-01-02 03:04:05.000000007"]) {
      run(`touch -d '${t}' f`, mnt);
      expect(run("stat -c '%x|%y' f", mnt).trim()).toBe(`${t} +0000|${t} +0000`);
    }
    run("touch -d '2001-02-03 04:05:06.123456789' f", mnt);
    run("touch -a -d '2011-01-01 00:00:00.5' f", mnt);
    expect(run("stat -c '%x|%y' f", mnt).trim()).toBe(
      "2011-01-01 00:00:00.500000000 +0000|2001-02-03 04:05:06.123456789 +0000",
    );
    run("touch -m -d '2012-01-01 00:00:00.25' f", mnt);
    expect(run("stat -c '%x|%y' f", mnt).trim()).toBe(
      "2011-01-01 00:00:00.500000000 +0000|2012-01-01 00:00:00.250000000 +0000",
    );
    const before = Number(run("date +%s", mnt));
    run("touch -m f", mnt); // UTIME_NOW for mtime, atime left alone
    expect(run("stat -c '%x' f", mnt).trim()).toBe("2011-01-01 00:00:00.500000000 +0000");
    expect(Number(run("stat -c %Y f", mnt))).toBeGreaterThanOrEqual(before);

    const src = join(dir, "src");
    await mkdir(src);
    buildTree(src);
    run(`rm ${src}/fifo`);
    run(`cp -p ${src}/a/b/c/numbers ${mnt}/copied`);
    expect(run(`stat -c %y ${mnt}/copied`)).toBe(run(`stat -c %y ${src}/a/b/c/numbers`));
    run(`rsync -aHAX ${src}/ ${mnt}/tree/`);
    expect(listing(join(mnt, "tree"), false)).toEqual(listing(src, false));
    const second = run(`rsync -aHAX --stats ${src}/ ${mnt}/tree/`);
    expect(second).toMatch(/Number of regular files transferred: 0\b/);
  });

  it("shows link counts and renames at once, and large and sparse files whole", async () => {
    s = await mounted();
    const { mnt } = s;
    run("echo x > a && ln a b && mkdir d && ln a d/c", mnt);
    expect(run("stat -c %h a", mnt).trim()).toBe("3");
    run("rm b", mnt);
    expect(run("stat -c %h a d/c", mnt).trim().split("\n")).toEqual(["2", "2"]);
    run("echo y > e && mv e a", mnt);
    expect(run("cat a; stat -c %h a d/c", mnt).trim().split("\n")).toEqual(["y", "1", "1"]);
    run("mkdir -p p/q && mv p/q r && rmdir p", mnt);
    expect(run("stat -c %h . r", mnt).trim().split("\n")).toEqual(["4", "2"]);

    // Every name of a hard-linked file shows changes made through another at once, also while
    // one is removed but still open.
    run("echo x > f && stat f > /dev/null && ln f g && stat f g > /dev/null", mnt);
    run("echo yy >> g && chmod 600 g", mnt);
    expect(run("stat -c '%s %a %h' f", mnt).trim()).toBe("5 600 2");
    const stats = run(
      "exec 3>>g && rm g && stat -c '%s' f && echo zzz >&3 && stat -c '%s' f && exec 3>&-",
      mnt,
    );
    expect(stats.trim().split("\n")).toEqual(["5", "9"]);
    expect(run("stat -c '%s %h' f", mnt).trim()).toBe("9 1");

    // Sequential reads keep several requests in flight.
    expect(await readAhead(mnt)).toBe(READ_AHEAD_KB);
    run("head -c 20000000 /dev/urandom > big", mnt);
    const sum = run("md5sum < big", mnt);
    run("dd if=big of=big2 bs=1M status=none && sync big2", mnt);
    expect(run("md5sum < big2", mnt)).toBe(sum);
    run("truncate -s 1T huge && printf tail >> huge", mnt);
    expect(run("stat -c %s huge", mnt).trim()).toBe(String(2 ** 40 + 4));
    expect(run("tail -c 4 huge", mnt)).toBe("tail");
    expect(Number(run("du -k huge", mnt).split("\t")[0])).toBeLessThan(1024);
  });

  it("answers requests on a thread raised above the daemon's priority, its other threads not", async () => {
    s = await mounted();
    run("mkdir d && touch d/f && ls -l d > /dev/null", s.mnt);
    const pid = lockPid(s.store)!;
    const nice = (tid: string) =>
      Number(readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8").split(") ")[1]!.split(" ")[16]);
    const others = readdirSync(`/proc/${pid}/task`).filter((t) => t !== String(pid));
    expect(others.length).toBeGreaterThan(4); // libfuse's, libuv's and V8's
    // The daemon starts at this process's priority; raising it takes root (CAP_SYS_NICE), as here.
    const own = getPriority();
    const raised = process.getuid?.() === 0 ? Math.max(-20, own - REQUEST_THREAD_BOOST) : own;
    expect(nice(String(pid))).toBe(raised);
    expect(others.map(nice)).toEqual(others.map(() => own));
  });

  it("reads the right bytes at any offset from disk, in production and in a snapshot", async () => {
    s = await mounted();
    const { mnt, dir } = s;
    run(`head -c 6000000 /dev/urandom > ${dir}/v1 && cp ${dir}/v1 f && sync f`, mnt);
    const name = (await ok("snapshot", "create", mnt)).trim();
    // Part of the file changes: the snapshot then reads some ranges from its diff area.
    run(`cp ${dir}/v1 ${dir}/v2`);
    for (const at of [0, 777_777, 2_000_000, 5_990_000]) {
      run(`head -c 100000 /dev/urandom > ${dir}/patch`);
      const dd = `dd if=${dir}/patch bs=100000 seek=${at} conv=notrunc status=none oflag=seek_bytes`;
      run(`${dd} of=${dir}/v2 && ${dd} of=f`, mnt);
    }
    const snap = join(mnt, ".snapshots", name, "f");
    run("sync f", mnt); // the changed chunks' new contents reach the base image
    expect(differences(join(mnt, "f"), `${dir}/v2`)).toBe(0);
    expect(differences(snap, `${dir}/v1`)).toBe(0);
    expect(run(`cmp f ${dir}/v2 && cmp ${snap} ${dir}/v1 && echo same`, mnt).trim()).toBe("same");
  });

  it("a snapshot resolves the names production had when it was taken, no others", async () => {
    s = await mounted();
    const { mnt } = s;
    run("mkdir d && for i in 1 2 3 4; do echo $i > d/f$i; done && mv d/f1 d/g1 && rm d/f2", mnt);
    run("stat d/g1 d/f3 d/f4 > /dev/null && ! stat d/f1 d/f2 2> /dev/null", mnt); // names cached
    const name = (await ok("snapshot", "create", mnt)).trim();
    run("mv d/f3 d/h3 && rm d/f4 && echo 5 > d/f5 && echo 2 > d/f2", mnt);
    const snap = join(".snapshots", name, "d");
    expect(run(`cat ${snap}/g1 ${snap}/f3 ${snap}/f4`, mnt)).toBe("1\n3\n4\n");
    for (const gone of ["f1", "f2", "h3", "f5"])
      expect(sh(`stat ${snap}/${gone}`, mnt).code, gone).not.toBe(0);
    expect(run(`ls ${snap}`, mnt).split("\n").filter(Boolean)).toEqual(["f3", "f4", "g1"]);
    expect(run("cat d/g1 d/h3 d/f5 d/f2", mnt)).toBe("1\n3\n5\n2\n");
  });

  it("a snapshot reads its own bytes while production overwrites the same file", async () => {
    s = await mounted();
    const { mnt, dir } = s;
    run(`head -c 6000000 /dev/urandom > ${dir}/v1 && cp ${dir}/v1 f && sync f`, mnt);
    const name = (await ok("snapshot", "create", mnt)).trim();
    const snap = join(mnt, ".snapshots", name, "f");
    // Another process overwrites the file, 256 KiB at a time and synced (so that the new
    // contents reach the base image), for as long as the reads last.
    const overwrite =
      "while :; do dd if=/dev/urandom of=f bs=64k count=4 seek=$((RANDOM % 88)) conv=notrunc,fsync status=none; done";
    const writer = spawn("bash", ["-c", overwrite], { cwd: mnt, stdio: "ignore" });
    try {
      for (let round = 0; round < 4; round++) expect(differences(snap, `${dir}/v1`)).toBe(0);
    } finally {
      const exited = once(writer, "exit");
      writer.kill("SIGKILL");
      await exited;
    }
    expect(run(`cmp ${snap} ${dir}/v1 && echo same`).trim()).toBe("same");
    expect(run(`cmp -s f ${dir}/v1 || echo changed`, mnt).trim()).toBe("changed");
  });
});
