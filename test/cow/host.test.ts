// Host files opened `direct` (the diff areas' data): every read and write gives what a buffered
// file gives, and aligned writes really go around the page cache.

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statfsSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type HostFile, NodeHostFs } from "../../src/cow/index.js";
import { int, type Rand, seeds, withSeed } from "../helpers/random.js";

const host = new NodeHostFs();
const TMPFS = 0x01021994;
const KiB = 1024;
const MiB = 1024 * KiB;
let root: string;
const open: HostFile[] = [];

/** A directory on a disk filesystem, the store's usual host. */
const DISK_DIR = "/var/tmp";
const onTmpfs = (dir: string) => statfsSync(dir).type === TMPFS;

beforeEach(() => {
  root = mkdtempSync(join(DISK_DIR, "shadowfs-host-"));
});
afterEach(async () => {
  for (const f of open.splice(0)) await f.close().catch(() => {});
  rmSync(root, { recursive: true, force: true });
});

async function file(path: string, direct: boolean): Promise<HostFile> {
  const f = await host.open(path, { create: true, direct });
  open.push(f);
  return f;
}

/** Bytes of the file the page cache holds (util-linux fincore). */
const cachedBytes = (path: string) =>
  Number(execFileSync("fincore", ["--bytes", "--noheadings", "-o", "RES", path]).toString());

/** Random bytes, cheap: a repeating seeded block shifted by `salt`. */
function bytes(rand: Rand, n: number): Buffer {
  const block = Buffer.from(Array.from({ length: 4093 }, () => int(rand, 0, 255)));
  const out = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i += block.length) block.copy(out, i, 0, Math.min(block.length, n - i));
  return out;
}

/** A length that is often aligned to 4 KiB and often at least 256 KiB, the cases direct I/O takes. */
function length(rand: Rand, max: number): number {
  const n = int(rand, 1, max);
  return rand() < 0.6 ? Math.max(4 * KiB, n - (n % (4 * KiB))) : n;
}

/** Runs a seeded sequence of writes, writev, reads and truncates against `f`, checked against a model. */
async function exercise(rand: Rand, f: HostFile, path: string, steps: number): Promise<void> {
  let model = Buffer.alloc(0);
  const put = (pos: number, data: Buffer) => {
    if (pos + data.length > model.length)
      model = Buffer.concat([model, Buffer.alloc(pos + data.length - model.length)]);
    data.copy(model, pos);
  };
  const position = () => {
    const p = int(rand, 0, model.length + MiB);
    return rand() < 0.6 ? p - (p % (4 * KiB)) : p;
  };
  const check = async (pos: number, n: number) => {
    const got = Buffer.alloc(n, 0xee);
    const read = await f.read(got, pos);
    const want = Buffer.alloc(n);
    model.copy(want, 0, Math.min(pos, model.length), Math.min(pos + n, model.length));
    expect(read).toBe(Math.max(0, Math.min(n, model.length - pos)));
    expect(got.equals(want)).toBe(true);
  };
  for (let i = 0; i < steps; i++) {
    const op = rand();
    if (op < 0.3) {
      const pos = position();
      const parts = Array.from({ length: int(rand, 1, 3) }, () =>
        bytes(rand, length(rand, 3 * MiB)),
      );
      await f.writev(parts, pos);
      put(pos, Buffer.concat(parts));
    } else if (op < 0.45) {
      const pos = position();
      const data = bytes(rand, length(rand, 9 * MiB));
      await f.write(data, pos);
      put(pos, data);
    } else if (op < 0.85) {
      await check(position(), length(rand, 6 * MiB));
    } else if (op < 0.92) {
      // A read racing a write to other bytes sees the bytes it asked for, all of them.
      const len = length(rand, 2 * MiB);
      const data = bytes(rand, len);
      const wpos = model.length + int(rand, 0, 4) * 4 * KiB;
      const readPos = int(rand, 0, Math.max(0, model.length - len));
      const want = model.subarray(readPos, readPos + Math.min(len, model.length - readPos));
      const got = Buffer.alloc(want.length);
      await Promise.all([f.write(data, wpos), f.read(got, readPos)]);
      expect(got.equals(want)).toBe(true);
      put(wpos, data);
    } else {
      const n = int(rand, 0, model.length);
      const cut = rand() < 0.5 ? n - (n % (4 * KiB)) : n;
      await f.truncate(cut);
      model = Buffer.from(model.subarray(0, cut));
    }
  }
  await check(0, model.length + 8192);
  await f.sync();
  expect(readFileSync(path).equals(model)).toBe(true);
  expect(await f.size()).toBe(model.length);
}

describe("host files opened direct", () => {
  it.each(seeds(4))(
    "read back every write exactly as buffered files do, in any alignment: seed %i",
    (seed) =>
      withSeed(seed, async (rand) => {
        const direct = join(root, "direct");
        const buffered = join(root, "buffered");
        await exercise(rand, await file(direct, true), direct, 60);
        await exercise(rand, await file(buffered, false), buffered, 20);
      }),
  );

  it.skipIf(onTmpfs(DISK_DIR))(
    "write aligned data around the page cache, and read it back from the disk",
    async () => {
      const path = join(root, "area");
      const f = await file(path, true);
      const data = Buffer.alloc(8 * MiB, 0x5a);
      await f.writev([data.subarray(0, 3 * MiB), data.subarray(3 * MiB)], 0);
      await f.sync();
      expect(cachedBytes(path)).toBe(0);
      const back = Buffer.alloc(8 * MiB);
      expect(await f.read(back, 0)).toBe(8 * MiB);
      expect(back.equals(data)).toBe(true);
      expect(cachedBytes(path)).toBe(0);
      // A buffered file, for contrast: its pages stay cached.
      const plain = join(root, "plain");
      const g = await file(plain, false);
      await g.write(data, 0);
      expect(cachedBytes(plain)).toBe(8 * MiB);
    },
  );

  it("keep every byte when more files do I/O at once than there are aligned buffers", async () => {
    const files = await Promise.all(
      Array.from({ length: 12 }, (_, i) => file(join(root, `f${i}`), true)),
    );
    const data = files.map((_, i) => Buffer.alloc(6 * MiB, i + 1));
    await Promise.all(files.map((f, i) => f.write(data[i]!, 4 * KiB)));
    const back = files.map(() => Buffer.alloc(6 * MiB));
    await Promise.all(files.map((f, i) => f.read(back[i]!, 4 * KiB)));
    for (const [i, b] of back.entries()) expect(b.equals(data[i]!)).toBe(true);
  });
});
