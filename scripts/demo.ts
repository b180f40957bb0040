// `npm run demo`: shows the copy-on-write store at work in a temporary directory (create, write,
// snapshot, overwrite, read both, reopen, check). It never touches anything outside that directory.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CowVolume, checkStore, NodeHostFs } from "../src/cow/index.js";

const MiB = 1024 * 1024;
const KiB = 1024;
const TEXT_BYTES = 48;
/** Where the demo writes: the first chunk, one in the middle (unaligned), the last block. */
const OFFSETS = [0, 20 * MiB + 12_345, 64 * MiB - 4096];

const host = new NodeHostFs();
let failed = false;

const show = (what: string, text: string) => console.log(`${`${what}:`.padEnd(11)} ${text}`);

function check(what: string, got: string, want: string): void {
  if (got !== want) {
    failed = true;
    console.error(
      `MISMATCH ${what}: read ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`,
    );
  }
}

/** A fixed-width record, so that a shorter text fully replaces a longer one. */
const record = (text: string) => Buffer.from(text.padEnd(TEXT_BYTES, " "), "utf8");

async function readText(dev: { read(o: number, t: Uint8Array): Promise<void> }, offset: number) {
  const buf = Buffer.alloc(TEXT_BYTES);
  await dev.read(offset, buf);
  return buf.toString("utf8").trimEnd();
}

const oldText = (i: number) => `monday: report v1, part ${i + 1}`;
const newText = (i: number) => `tuesday: report v2 (rewritten), part ${i + 1}`;

async function main(): Promise<void> {
  const tmp = await mkdtemp(join(tmpdir(), "shadowfs-demo-"));
  const dir = join(tmp, "store");
  try {
    const vol = await CowVolume.create(host, dir, {
      volumeSize: 64 * MiB,
      chunkSize: 64 * KiB,
      shadowStorageLimit: 16 * MiB,
    });
    show("store", `${dir} (volume 64 MiB, chunk 64 KiB, shadow storage limit 16 MiB)`);

    for (const [i, at] of OFFSETS.entries()) await vol.write(at, record(oldText(i)));
    show("write", `${OFFSETS.length} texts at offsets ${OFFSETS.join(", ")}`);

    const snap = await vol.createSnapshot({ name: "before" });
    show("snapshot", `#${snap.id} "${snap.name}" taken`);

    for (const [i, at] of OFFSETS.entries()) await vol.write(at, record(newText(i)));
    await vol.flush();
    show("overwrite", "the same offsets, new texts (old chunks copied to the diff area)");

    const view = vol.snapshotDevice(snap.id);
    for (const [i, at] of OFFSETS.entries()) {
      const live = await readText(vol, at);
      const old = await readText(view, at);
      show("live", `@${at} ${JSON.stringify(live)}`);
      show("before", `@${at} ${JSON.stringify(old)}`);
      check(`live @${at}`, live, newText(i));
      check(`snapshot @${at}`, old, oldText(i));
    }

    for (const s of vol.snapshots()) {
      show(
        "snapshots",
        `#${s.id} ${s.name ?? "(no name)"}, taken ${new Date(s.createdAt).toISOString()}, diff area ${s.diffAreaBytes} bytes`,
      );
    }
    show("storage", `${vol.storageUsed()} of ${vol.settings.shadowStorageLimit} bytes`);
    await vol.close();

    const again = await CowVolume.open(host, dir);
    try {
      const view2 = again.snapshotDevice(snap.id);
      for (const [i, at] of OFFSETS.entries()) {
        const old = await readText(view2, at);
        show("reopened", `before @${at} ${JSON.stringify(old)}`);
        check(`reopened snapshot @${at}`, old, oldText(i));
        check(`reopened live @${at}`, await readText(again, at), newText(i));
      }
      show(
        "recovery",
        again.recovery.uncleanShutdown ? "unclean shutdown recovered" : "none needed (clean close)",
      );
    } finally {
      await again.close();
    }

    const report = await checkStore(host, dir);
    const problems = report.problems.map((p) => `${p.file}: ${p.message}`).join("; ");
    show(
      "check",
      report.ok
        ? `ok (${report.snapshots} snapshot(s), ${report.chunksChecked} preserved chunk(s) verified)`
        : `DAMAGED: ${problems}`,
    );
    if (!report.ok) failed = true;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

await main();
console.log(failed ? "demo: FAILED" : "demo: ok");
process.exitCode = failed ? 1 : 0;
