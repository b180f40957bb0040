// Benchmark of the filesystem API (no FUSE) on a copy-on-write volume, side by side with Node's
// fs.promises on a host directory of the same disk. It owns one temporary directory, removed at exit.

import { randomBytes } from "node:crypto";
import {
  mkdir as hostMkdir,
  stat as hostStat,
  unlink as hostUnlink,
  mkdtemp,
  open,
  rm,
} from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { CowVolume, NodeHostFs } from "../src/cow/index.js";
import { FileSystem, ROOT } from "../src/fs/filesystem.js";

const { values: opt } = parseArgs({
  options: {
    json: { type: "boolean", default: false },
    size: { type: "string", default: "1024" }, // MiB of the sequential file
    seconds: { type: "string", default: "20" },
    files: { type: "string", default: "10000" },
    big: { type: "string", default: "100000" },
    dir: { type: "string", default: "/var/tmp" },
  },
});
const MiB = 2 ** 20;
const REQ = 128 * 1024;
const fileBytes = Number(opt.size) * MiB;
const seconds = Number(opt.seconds);
const nFiles = Number(opt.files);
const nBig = Number(opt.big);
const me = { uid: 0, gid: 0, groups: [] };
const say = (m: string) => process.stderr.write(`bench-fs: ${m}\n`);

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return (performance.now() - t) / 1000;
}

/** Mean microseconds of a lookup of `samples` random names among the first `n` of a directory. */
async function lookupUs(
  lookup: (name: string) => Promise<unknown>,
  n: number,
  samples = 2000,
): Promise<number> {
  const names = Array.from({ length: samples }, () => `e${Math.floor(Math.random() * n)}`);
  for (const name of names.slice(0, 200)) await lookup(name); // warm the caches as for a real directory
  return (
    ((await time(async () => {
      for (const name of names) await lookup(name);
    })) *
      1e6) /
    samples
  );
}

async function run(work: string) {
  const vol = await CowVolume.create(new NodeHostFs(), join(work, "store"), {
    volumeSize: fileBytes + 1024 * MiB,
  });
  await FileSystem.mkfs(vol);
  const fs = await FileSystem.open(vol);
  const host = join(work, "host");
  await hostMkdir(host);
  const r: Record<string, number> = {};
  try {
    say(`create, stat and delete ${nFiles} files in one directory`);
    const d = await fs.mkdir(ROOT, "many", 0o755, me);
    const made: number[] = [];
    const tc = await time(async () => {
      for (let i = 0; i < nFiles; i++) made.push((await fs.create(d.ino, `f${i}`, 0o644, me)).ino);
      await fs.fsync();
    });
    const ts = await time(async () => {
      for (let i = 0; i < nFiles; i++) await fs.lookup(d.ino, `f${i}`);
    });
    const td = await time(async () => {
      for (let i = 0; i < nFiles; i++) await fs.unlink(d.ino, `f${i}`);
      await fs.fsync();
    });
    const hd = join(host, "many");
    await hostMkdir(hd);
    const hc = await time(async () => {
      for (let i = 0; i < nFiles; i++) await (await open(join(hd, `f${i}`), "w")).close();
    });
    const hs = await time(async () => {
      for (let i = 0; i < nFiles; i++) await hostStat(join(hd, `f${i}`));
    });
    const hdel = await time(async () => {
      for (let i = 0; i < nFiles; i++) await hostUnlink(join(hd, `f${i}`));
    });
    Object.assign(r, {
      createPerSec: nFiles / tc,
      createPerSecHost: nFiles / hc,
      statPerSec: nFiles / ts,
      statPerSecHost: nFiles / hs,
      deletePerSec: nFiles / td,
      deletePerSecHost: nFiles / hdel,
    });

    say(`lookups among 1,000 and among ${nBig} entries of one directory`);
    const big = await fs.mkdir(ROOT, "big", 0o755, me);
    for (let i = 0; i < nBig; i++) {
      await fs.mknod(big.ino, `e${i}`, 0o100644, 0, me);
      if (i === 999) r.lookupUs1k = await lookupUs((n) => fs.lookup(big.ino, n), 1000);
      if (i % 5000 === 4999) await fs.fsync();
    }
    r.lookupUs100k = await lookupUs((n) => fs.lookup(big.ino, n), nBig);

    say(`sequential write and read of ${opt.size} MiB in 128 KiB requests`);
    const data = randomBytes(REQ);
    const f = await fs.create(ROOT, "seq", 0o644, me);
    const tw = await time(async () => {
      for (let off = 0; off < fileBytes; off += REQ) await fs.write(f.ino, off, data);
      await fs.fsync();
    });
    // Both sides read into one buffer of the caller's, as the FUSE binding hands one to fill.
    const buf = Buffer.alloc(REQ);
    const tr = await time(async () => {
      for (let off = 0; off < fileBytes; off += REQ) await fs.read(f.ino, off, REQ, buf);
    });
    // And into a new buffer each time (the cost of fresh memory, on either side).
    const tn = await time(async () => {
      for (let off = 0; off < fileBytes; off += REQ) await fs.read(f.ino, off, REQ);
    });
    const hf = await open(join(host, "seq"), "w+");
    const hw = await time(async () => {
      for (let off = 0; off < fileBytes; off += REQ) await hf.write(data, 0, REQ, off);
      await hf.datasync();
    });
    const hr = await time(async () => {
      for (let off = 0; off < fileBytes; off += REQ) await hf.read(buf, 0, REQ, off);
    });
    Object.assign(r, {
      seqWriteMBps: fileBytes / 1e6 / tw,
      seqWriteMBpsHost: fileBytes / 1e6 / hw,
      seqReadMBps: fileBytes / 1e6 / tr,
      seqReadMBpsHost: fileBytes / 1e6 / hr,
      seqReadNewBufferMBps: fileBytes / 1e6 / tn,
    });

    say(`random 4 KiB writes for ${seconds} s each`);
    const block = randomBytes(4096);
    const rand = async (write: (off: number) => Promise<unknown>, sync: () => Promise<void>) => {
      let n = 0;
      const t = await time(async () => {
        const end = performance.now() + seconds * 1000;
        for (; performance.now() < end; n++)
          await write(Math.floor(Math.random() * (fileBytes / 4096)) * 4096);
        await sync();
      });
      return n / t;
    };
    r.randWriteIops = await rand(
      (off) => fs.write(f.ino, off, block),
      () => fs.fsync(),
    );
    r.randWriteIopsHost = await rand(
      (off) => hf.write(block, 0, 4096, off),
      () => hf.datasync(),
    );
    await hf.close();
  } finally {
    await fs.close().catch(() => {});
    await vol.close().catch(() => {});
  }
  return r;
}

async function main() {
  const work = await mkdtemp(join(opt.dir, "bench-fs-"));
  let r: Record<string, number>;
  try {
    r = await run(work);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const ratios = {
    seqWriteVsHost: r.seqWriteMBps! / r.seqWriteMBpsHost!,
    seqReadVsHost: r.seqReadMBps! / r.seqReadMBpsHost!,
    createVsHost: r.createPerSec! / r.createPerSecHost!,
    lookup100kVs1k: r.lookupUs100k! / r.lookupUs1k!,
  };
  const out = Object.fromEntries(
    Object.entries({ ...r, ...ratios }).map(([k, v]) => [k, Number(v.toFixed(3))]),
  );
  if (opt.json) {
    process.stdout.write(
      `${JSON.stringify({ ...out, fileMiB: Number(opt.size), files: nFiles, bigDirectory: nBig })}\n`,
    );
    return;
  }
  const targets: Record<string, string> = {
    seqWriteVsHost: ">= 0.70",
    seqReadVsHost: ">= 0.70",
    createVsHost: ">= 0.50",
    lookup100kVs1k: "<= 2",
  };
  for (const [k, v] of Object.entries(out))
    process.stdout.write(`${k.padEnd(20)} ${String(v).padStart(12)}  ${targets[k] ?? ""}\n`);
}

main().catch((e: unknown) => {
  say(`failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  process.exitCode = 1;
});
