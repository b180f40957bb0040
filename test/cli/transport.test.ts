// `shadowfs snapshot send` and `snapshot receive` through the real binary and real mounts: a
// varied tree through five snapshots, sent whole then incrementally (to a file and through a
// pipe, into a store mounted and not), compared with `rsync -aHAXc`; what an incremental stream
// weighs; streams damaged or foreign refused with nothing changed; a receive killed with SIGKILL.

import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { ReceiveResult } from "../../src/daemon/receive.js";
import type { SnapshotRow } from "../../src/daemon/reports.js";
import {
  background,
  CLI,
  ok,
  type Run,
  run,
  type Scratch,
  scratchEachTest,
  sh,
  shadowfs,
} from "../helpers/mounted.js";
import { int, seeds, withSeed } from "../helpers/random.js";
import { change, differences } from "../helpers/varied-tree.js";

const { fresh, mount, hold } = scratchEachTest({ checkAll: true });
const SH = `${process.execPath} ${CLI}`;

const list = async (target: string) =>
  JSON.parse(await ok("snapshot", "list", target, "--json")) as SnapshotRow[];

/** What a received snapshot keeps of its source: names, time, set. */
const kept = (rows: SnapshotRow[]) =>
  rows.map(({ gmt, name, setId, createdAt, guid }) => ({ gmt, name, setId, createdAt, guid }));

function refused(r: Run, pattern: RegExp): void {
  expect(r.code, `expected a failure, got stdout ${r.stdout}`).not.toBe(0);
  expect(r.stderr).toMatch(/^shadowfs: [^\n]+\n$/);
  expect(r.stderr).toMatch(pattern);
}

/** The volume's blocks and diff areas of a store, by file (not the catalog, which opens rewrite). */
function blocks(store: string): Record<string, string> {
  const out: Record<string, string> = {};
  const vol = join(store, "volume");
  for (const name of readdirSync(vol, { recursive: true, encoding: "utf8" }).sort()) {
    if (name === "catalog" || !statSync(join(vol, name)).isFile()) continue;
    out[name] = createHash("sha256")
      .update(readFileSync(join(vol, name)))
      .digest("hex");
  }
  return out;
}

/** Source and destination stores; the source mounted, with snapshots s1..sN of `change`. */
async function sources(s: Scratch, count: number, size = "256M") {
  await ok("init", s.store, "--size", size);
  await mount(s.store, s.mnt);
  for (let i = 0; i < count; i++) {
    change(s.mnt, i);
    await ok("snapshot", "create", s.mnt, "--name", `s${i + 1}`);
  }
  const rows = await list(s.mnt);
  return {
    rows,
    /** Snapshot `n` (1-based) of the source, through its `.snapshots`. */
    at: (n: number) => join(s.mnt, ".snapshots", rows[n - 1]!.gmt),
  };
}

describe("shadowfs snapshot send / receive", () => {
  it("carries a varied tree through five snapshots, whole and then incrementally", async () => {
    const s = await fresh();
    const src = await sources(s, 5);
    const dst = join(s.dir, "dst");
    const dmnt = join(s.dir, "dmnt");
    run(`mkdir ${dmnt}`);
    const file = join(s.dir, "s1.stream");
    const sent = await ok("snapshot", "send", s.mnt, "s1", "-o", file);
    expect(sent).toMatch(new RegExp(`^sent ${src.rows[0]!.gmt} to ${file}: `));
    const got = JSON.parse(
      await ok("snapshot", "receive", dst, "-i", file, "--json"),
    ) as ReceiveResult;
    expect(got).toMatchObject({ store: dst, snapshot: src.rows[0]!.gmt, name: "s1", saved: null });
    for (let n = 2; n <= 5; n++) {
      // Into the store as it is, then into its mount point once it is mounted.
      if (n === 4) await mount(dst, dmnt);
      const into = n >= 4 ? dmnt : dst;
      run(`${SH} snapshot send ${s.mnt} s${n} --from s${n - 1} | ${SH} snapshot receive ${into}`);
    }
    expect(kept(await list(dmnt))).toEqual(kept(src.rows));
    for (const [i, row] of src.rows.entries())
      expect(differences(src.at(i + 1), join(dmnt, ".snapshots", row.gmt)), row.gmt).toBe("");
    expect(differences(src.at(5), dmnt)).toBe("");
    expect(
      run(
        `getfattr -d ${JSON.stringify(join(dmnt, ".snapshots", src.rows[0]!.gmt, "dir/random"))}`,
      ),
    ).toMatch(/user.colour="blue"/);
    for (const target of [s.mnt, dmnt])
      expect(JSON.parse(await ok("fsck", target, "--json")).ok).toBe(true);
  });

  it("sends about what changed: 1% of a 1 GiB volume", async () => {
    const s = await fresh();
    await ok("init", s.store, "--size", "1G");
    await mount(s.store, s.mnt);
    const f = join(s.mnt, "data");
    run(`head -c ${300 << 20} /dev/urandom > ${f}`);
    await ok("snapshot", "create", s.mnt, "--name", "a");
    // 10 MiB (1% of the volume) overwritten in place by one process, as 10 runs of 1 MiB.
    const runs = 10;
    const script = join(s.dir, "overwrite.py");
    writeFileSync(
      script,
      [
        "import os, random",
        `fd = os.open(${JSON.stringify(f)}, os.O_WRONLY)`,
        `for m in random.sample(range(300), ${runs}):`,
        "    os.pwrite(fd, os.urandom(1 << 20), m << 20)",
        "os.close(fd)",
      ].join("\n"),
    );
    run(`python3 ${script}`);
    await ok("snapshot", "create", s.mnt, "--name", "b");
    const file = join(s.dir, "inc");
    await ok("snapshot", "send", s.mnt, "b", "--from", "a", "-o", file);
    const bytes = statSync(file).size;
    const changed = runs << 20;
    expect(bytes).toBeGreaterThanOrEqual(changed);
    // Chunk rounding: a run of the file need not start on a chunk of the volume (one more chunk
    // each); and the file's inode and the journal's blocks that wrote it change too (a few).
    expect(bytes).toBeLessThan(changed + (runs + 16) * 65536);
  });

  it("refuses a stream damaged, cut, reordered, foreign or not its store's, changing nothing", async () => {
    const s = await fresh();
    await sources(s, 3);
    const dst = join(s.dir, "dst");
    const full = join(s.dir, "full");
    const inc = join(s.dir, "inc");
    await ok("snapshot", "send", s.mnt, "s1", "-o", full);
    await ok("snapshot", "receive", dst, "-i", full);
    await ok("snapshot", "send", s.mnt, "s2", "--from", "s1", "-o", inc);
    const stream = readFileSync(inc);
    const before = { rows: await list(dst), blocks: blocks(dst) };
    // A stream cut short is kept as far as it came, to be resumed; it is discarded here.
    const attempt = async (bytes: Buffer, pattern: RegExp, what: string) => {
      const path = join(s.dir, "bad");
      writeFileSync(path, bytes);
      const r = await shadowfs("snapshot", "receive", dst, "-i", path);
      refused(r, pattern);
      if (/cut short/.test(r.stderr)) {
        expect(r.stderr).toMatch(/resume it with `shadowfs snapshot send SOURCE --resume \S+ \|/);
        expect(await ok("snapshot", "receive", dst, "--abort")).toMatch(/^discarded/);
      }
      expect({ rows: await list(dst), blocks: blocks(dst) }, what).toEqual(before);
      expect(readdirSync(dst)).not.toContain("receive");
    };
    await withSeed(seeds(1)[0]!, async (rand) => {
      for (let i = 0; i < 4; i++) {
        const at = int(rand, 1, stream.length - 1);
        await attempt(stream.subarray(0, at), /stream: cut short/, `cut at ${at}`);
        const flipped = Buffer.from(stream);
        const spot = int(rand, 0, stream.length - 1);
        flipped[spot] = flipped[spot]! ^ 0x10;
        await attempt(flipped, /stream: /, `byte ${spot} flipped`);
      }
    });
    // The first two records swapped: the header's length, then one data record and its chunk.
    const first = 24 + stream.readUInt32LE(12);
    const rec = 32 + 65536;
    const swapped = Buffer.concat([
      stream.subarray(0, first),
      stream.subarray(first + rec, first + 2 * rec),
      stream.subarray(first, first + rec),
      stream.subarray(first + 2 * rec),
    ]);
    await attempt(swapped, /out of order/, "records swapped");
    await attempt(Buffer.from("just some text\n"), /not a shadowfs send stream/, "text");
    // From another volume: its base is not in the destination.
    const other = join(s.dir, "other");
    await ok("init", other, "--size", "256M");
    await ok("snapshot", "create", other, "--name", "x");
    await ok("snapshot", "create", other, "--name", "y");
    const foreign = join(s.dir, "foreign");
    await ok("snapshot", "send", other, "y", "--from", "x", "-o", foreign);
    await attempt(readFileSync(foreign), /base, snapshot .* \(x\), is not in/, "foreign");
    // Already received; a full stream into a store; an incremental one into a new path.
    await ok("snapshot", "receive", dst, "-i", inc);
    const after = await list(dst);
    refused(await shadowfs("snapshot", "receive", dst, "-i", inc), /already has snapshot/);
    refused(await shadowfs("snapshot", "receive", dst, "-i", full), /holds a store/);
    expect(await list(dst)).toEqual(after);
    const none = join(s.dir, "none");
    refused(await shadowfs("snapshot", "receive", none, "-i", inc), /neither a shadowfs store/);
    const cut = join(s.dir, "cut");
    writeFileSync(cut, readFileSync(full).subarray(0, 100_000));
    refused(await shadowfs("snapshot", "receive", none, "-i", cut), /stream: cut short/);
    expect(readdirSync(none)).toEqual(["receive"]);
    await ok("snapshot", "receive", none, "--abort");
    expect(readdirSync(s.dir)).not.toContain("none");
    // Bad requests of send.
    const out = join(s.dir, "out");
    refused(await shadowfs("snapshot", "send", s.mnt, "nope", "-o", out), /no snapshot "nope"/);
    refused(
      await shadowfs("snapshot", "send", s.mnt, "s1", "--from", "s2", "-o", out),
      /not older/,
    );
    expect(readdirSync(s.dir)).not.toContain("out");
    const tty = sh(`script -qec "${SH} snapshot send ${s.mnt} s1" /dev/null`);
    expect(tty.code).not.toBe(0);
    expect(tty.stdout).toMatch(/standard output is a terminal/);
  });

  it("keeps a mounted store's own changes only when forced, in a snapshot", async () => {
    const s = await fresh();
    const src = await sources(s, 2);
    const dst = join(s.dir, "dst");
    const dmnt = join(s.dir, "dmnt");
    run(`mkdir ${dmnt}`);
    run(`${SH} snapshot send ${s.mnt} s1 | ${SH} snapshot receive ${dst}`);
    await mount(dst, dmnt);
    writeFileSync(join(dmnt, "mine"), "local work");
    const inc = join(s.dir, "inc");
    await ok("snapshot", "send", s.mnt, "s2", "--from", "s1", "-o", inc);
    refused(
      await shadowfs("snapshot", "receive", dmnt, "-i", inc),
      /production of .* changed since the stream's base .* \(s1\).*--force/,
    );
    const open = hold(background(`exec 3<${JSON.stringify(join(dmnt, "mine"))}; sleep 60`));
    await new Promise((r) => setTimeout(r, 300));
    refused(await shadowfs("snapshot", "receive", dmnt, "-i", inc), /files are open in production/);
    await open.stop();
    const got = JSON.parse(
      await ok("snapshot", "receive", dmnt, "-i", inc, "--force", "--json"),
    ) as ReceiveResult;
    expect(got.snapshot).toBe(src.rows[1]!.gmt);
    expect(differences(src.at(2), dmnt)).toBe("");
    expect(readFileSync(join(dmnt, ".snapshots", got.saved!, "mine"), "utf8")).toBe("local work");
  });

  it("a receive killed with SIGKILL is resumed, or completed by the next open", async () => {
    const s = await fresh();
    await ok("init", s.store, "--size", "256M");
    await mount(s.store, s.mnt);
    await ok("snapshot", "create", s.mnt, "--name", "s1");
    run(`head -c ${24 << 20} /dev/urandom > ${join(s.mnt, "big")}`);
    await ok("snapshot", "create", s.mnt, "--name", "s2");
    const rows = await list(s.mnt);
    const pristine = join(s.dir, "pristine");
    run(`${SH} snapshot send ${s.mnt} s1 | ${SH} snapshot receive ${pristine}`);
    const inc = join(s.dir, "inc");
    await ok("snapshot", "send", s.mnt, "s2", "--from", "s1", "-o", inc);
    const dmnt = join(s.dir, "dmnt");
    run(`mkdir ${dmnt}`);
    await withSeed(seeds(1)[0]!, async (rand) => {
      for (let i = 0; i < 4; i++) {
        const dst = join(s.dir, `dst${i}`);
        run(`cp -a ${pristine} ${dst}`);
        const r = hold(background(`exec ${SH} snapshot receive ${dst} -i ${inc}`));
        await new Promise((done) => setTimeout(done, int(rand, 50, 1500)));
        await r.stop("SIGKILL");
        const token = sh(`${SH} snapshot receive ${dst} --token`);
        // Mounting (opening for writing) completes a receive that was being applied, and keeps
        // one that was under way, to be resumed.
        await mount(dst, dmnt);
        const names = (await list(dmnt)).map((x) => x.name);
        expect([["s1"], ["s1", "s2"]]).toContainEqual(names);
        if (names.length === 1 && token.code === 0)
          run(
            `${SH} snapshot send ${s.mnt} --resume ${token.stdout.trim()} | ${SH} snapshot receive ${dmnt}`,
          );
        else if (names.length === 1) await ok("snapshot", "receive", dmnt, "-i", inc);
        expect(readdirSync(dst)).not.toContain("receive");
        expect(differences(join(s.mnt, ".snapshots", rows[1]!.gmt), dmnt)).toBe("");
        expect(JSON.parse(await ok("fsck", dmnt, "--json")).ok).toBe(true);
        await ok("unmount", dmnt);
      }
    });
  });

  it("resumes a stream cut short, full or incremental, sending only the rest", async () => {
    const s = await fresh();
    const src = await sources(s, 2);
    const full = join(s.dir, "full");
    const inc = join(s.dir, "inc");
    await ok("snapshot", "send", s.mnt, "s1", "-o", full);
    await ok("snapshot", "send", s.mnt, "s2", "--from", "s1", "-o", inc);
    const dst = join(s.dir, "dst");
    const cut = join(s.dir, "cut");
    await withSeed(seeds(1)[0]!, async (rand) => {
      for (const [stream, n] of [
        [full, 1],
        [inc, 2],
      ] as const) {
        const bytes = readFileSync(stream);
        const at = int(rand, 1000, bytes.length - 1000);
        writeFileSync(cut, bytes.subarray(0, at));
        refused(await shadowfs("snapshot", "receive", dst, "-i", cut), /cut short.*--resume/);
        refused(await shadowfs("snapshot", "receive", dst, "-i", stream), /interrupted receive/);
        const token = (await ok("snapshot", "receive", dst, "--token")).trim();
        const rest = join(s.dir, "rest");
        await ok("snapshot", "send", s.mnt, "--resume", token, "-o", rest);
        // Only the rest: what followed the last whole record received (at most a record and its
        // chunk before the cut), behind a header that says where it resumes.
        expect(statSync(rest).size).toBeLessThanOrEqual(bytes.length - at + 32 + 65536 + 64);
        // The rest from another chunk than the one the receive got to is refused.
        const t = JSON.parse(Buffer.from(token, "base64url").toString()) as { from: number };
        const later = Buffer.from(JSON.stringify({ ...t, from: t.from + 1 })).toString("base64url");
        const other = join(s.dir, "other");
        await ok("snapshot", "send", s.mnt, "--resume", later, "-o", other);
        refused(await shadowfs("snapshot", "receive", dst, "-i", other), /resumes from chunk/);
        await ok("snapshot", "receive", dst, "-i", rest);
        expect((await list(dst)).map((r) => r.name)).toEqual(n === 1 ? ["s1"] : ["s1", "s2"]);
      }
    });
    const dmnt = join(s.dir, "dmnt");
    run(`mkdir ${dmnt}`);
    await mount(dst, dmnt);
    expect(differences(src.at(2), dmnt)).toBe("");
    refused(await shadowfs("snapshot", "send", s.mnt, "--resume", "garbage"), /not a resume token/);
  });

  it("clones a snapshot into a store of its own, which lives on when the source is gone", async () => {
    const s = await fresh();
    const src = await sources(s, 2);
    const clone = join(s.dir, "clone");
    const cmnt = join(s.dir, "cmnt");
    run(`mkdir ${cmnt}`);
    expect(await ok("snapshot", "clone", s.mnt, "s1", clone, "--mount", cmnt)).toMatch(
      new RegExp(`^cloned ${src.rows[0]!.gmt} into ${clone}\nmounted ${clone} on ${cmnt} `),
    );
    expect(differences(src.at(1), cmnt)).toBe("");
    expect(await list(cmnt)).toEqual([]);
    writeFileSync(join(cmnt, "only-in-clone"), "c");
    writeFileSync(join(s.mnt, "only-in-source"), "s");
    expect(readdirSync(s.mnt)).not.toContain("only-in-clone");
    expect(readdirSync(cmnt)).not.toContain("only-in-source");
    refused(await shadowfs("snapshot", "clone", s.mnt, "s2", clone), /holds a store/);
    // With --json, standard output holds the JSON alone, the mount included.
    const clone2 = join(s.dir, "clone2");
    const cmnt2 = join(s.dir, "cmnt2");
    run(`mkdir ${cmnt2}`);
    const made = JSON.parse(
      await ok("snapshot", "clone", s.mnt, "s2", clone2, "--mount", cmnt2, "--json"),
    ) as { store: string; from: string; mountpoint: string | null };
    expect(made).toMatchObject({ store: clone2, from: src.rows[1]!.gmt, mountpoint: cmnt2 });
    expect(differences(src.at(2), cmnt2)).toBe("");
    await ok("unmount", s.mnt);
    run(`rm -rf ${s.store}`);
    await ok("unmount", cmnt);
    await mount(clone, cmnt);
    expect(readFileSync(join(cmnt, "only-in-clone"), "utf8")).toBe("c");
    expect(readFileSync(join(cmnt, "dir/hard"), "utf8")).toBe("hello\n");
    expect(JSON.parse(await ok("fsck", cmnt, "--json")).ok).toBe(true);
  });

  it("replicates a store: whole at first, then from the newest common snapshot, then nothing", async () => {
    const s = await fresh();
    await sources(s, 3);
    const dst = join(s.dir, "dst");
    const dmnt = join(s.dir, "dmnt");
    run(`mkdir ${dmnt}`);
    type Replicated = { snapshot: string; from: string | null; upToDate: boolean; bytes: number };
    const replicate = async () =>
      JSON.parse(await ok("replicate", s.mnt, dst, "--json")) as Replicated;
    const first = await replicate();
    expect(first).toMatchObject({ from: null, upToDate: false });
    expect(first.bytes).toBeGreaterThan(0);
    expect(await replicate()).toMatchObject({ upToDate: true, bytes: 0 });
    change(s.mnt, 3);
    await ok("snapshot", "create", s.mnt, "--name", "s4");
    change(s.mnt, 4);
    await ok("snapshot", "create", s.mnt, "--name", "s5");
    await mount(dst, dmnt);
    const rows = await list(s.mnt);
    expect(await replicate()).toMatchObject({ snapshot: rows[4]!.gmt, from: rows[2]!.gmt });
    expect((await list(dmnt)).map((r) => r.name)).toEqual(["s3", "s5"]);
    expect(differences(join(s.mnt, ".snapshots", rows[4]!.gmt), dmnt)).toBe("");
    expect(await replicate()).toMatchObject({ upToDate: true });
    const other = join(s.dir, "other");
    await ok("init", other, "--size", "256M");
    refused(await shadowfs("replicate", s.mnt, other), /no snapshot in common/);
  });
});
