// Send streams, format version 1: the golden streams (made once by scripts/make-golden-stream.ts
// from the golden store) read as the snapshots they hold and are written again byte for byte; and
// a stream damaged anywhere (a byte flipped, cut, records swapped, bytes added) is refused.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { crc32c } from "@node-rs/crc32";
import { describe, expect, it } from "vitest";
import {
  CowVolume,
  collectingSink,
  NodeHostFs,
  StreamReader,
  snapshotStream,
  writeStream,
} from "../../src/cow/index.js";
import { isFsError } from "../../src/errors.js";
import { GOLDEN_DIR, GOLDEN_SETTINGS, goldenModel } from "../helpers/golden-pattern.js";
import { int, seeds, withSeed } from "../helpers/random.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
const golden = (name: string) => readFileSync(join(root, "test/fixtures/golden-stream-v1", name));
const model = goldenModel();
const CS = GOLDEN_SETTINGS.chunkSize;
// The v1 layout, written out here on purpose rather than imported from src/cow/stream-format.ts.
const HEADER = 24;
const RECORD = 32;

async function* pieces(bytes: Buffer, size = 1000): AsyncGenerator<Buffer> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

/** `image` with the stream's chunks written over it; throws as the reader does. */
async function applyTo(image: Buffer, stream: Buffer, size?: number): Promise<Buffer> {
  const out = Buffer.from(image);
  for await (const c of new StreamReader(pieces(stream, size)).chunks()) {
    if (c.data) c.data.copy(out, c.chunk * CS);
    else out.fill(0, c.chunk * CS, (c.chunk + c.count) * CS);
  }
  return out;
}

/** Offsets of each record in a stream, and whether data follows it. */
function records(stream: Buffer): Array<{ at: number; length: number }> {
  const out: Array<{ at: number; length: number }> = [];
  let at = HEADER + stream.readUInt32LE(12);
  while (at < stream.length) {
    const length = RECORD + (stream.readUInt32LE(at) === 1 ? CS : 0);
    out.push({ at, length });
    at += length;
  }
  return out;
}

async function refused(stream: Buffer, why: string): Promise<string> {
  try {
    await applyTo(Buffer.alloc(GOLDEN_SETTINGS.volumeSize), stream);
  } catch (e) {
    expect(isFsError(e, "EBADMSG"), `${why}: ${e}`).toBe(true);
    return (e as Error).message;
  }
  throw new Error(`${why}: the stream was taken`);
}

describe("golden send streams v1", () => {
  const full = golden("full-1");
  const incremental = golden("incremental-1-2");

  it("have the v1 header: magic, version, checksums, and the snapshots they hold", async () => {
    for (const s of [full, incremental]) {
      expect(s.toString("latin1", 0, 8)).toBe("SHDWSEND");
      expect(s.readUInt32LE(8)).toBe(1);
      const body = s.subarray(HEADER, HEADER + s.readUInt32LE(12));
      expect(s.readUInt32LE(16)).toBe(crc32c(body));
      expect(s.readUInt32LE(20)).toBe(crc32c(s.subarray(0, 20)));
      const end = s.subarray(s.length - RECORD);
      expect(end.readUInt32LE(0), "the last record is the end record").toBe(3);
    }
    const h = await new StreamReader(pieces(incremental)).header();
    expect(h).toMatchObject({
      volumeSize: GOLDEN_SETTINGS.volumeSize,
      chunkSize: CS,
      snapshot: { id: 2, name: "tuesday", createdAt: model.snapshots[1]!.createdAt },
      base: { id: 1, name: "monday", createdAt: model.snapshots[0]!.createdAt },
    });
    expect(h.snapshot.guid).toBe(`${h.volumeUuid}:2`);
  });

  it("read as the snapshots of the golden store, in pieces of any size", async () => {
    const zeros = Buffer.alloc(GOLDEN_SETTINGS.volumeSize);
    for (const size of [1, 7, 4096, 1 << 20]) {
      const monday = await applyTo(zeros, full, size);
      expect(monday.equals(model.snapshots[0]!.image)).toBe(true);
      const tuesday = await applyTo(monday, incremental, size);
      expect(tuesday.equals(model.snapshots[1]!.image)).toBe(true);
    }
  });

  it("are what today's writer makes of the golden store, byte for byte", async () => {
    const vol = await CowVolume.open(new NodeHostFs(), join(root, GOLDEN_DIR), { readOnly: true });
    try {
      const collect = async (s: ReturnType<typeof snapshotStream>) => {
        const sink = collectingSink();
        await s.write(sink);
        return sink.bytes();
      };
      expect((await collect(snapshotStream(vol, 1))).equals(full)).toBe(true);
      expect((await collect(snapshotStream(vol, 2, { base: 1 }))).equals(incremental)).toBe(true);
    } finally {
      await vol.close();
    }
  });

  it("hold only the chunks that differ from the base", () => {
    const kinds = records(incremental).map((r) => incremental.readUInt32LE(r.at));
    expect(kinds.at(-1)).toBe(3);
    expect(kinds.filter((k) => k === 1).length).toBe(model.snapshots[0]!.preserved.length);
  });

  it("send a chunk of zeros as a run of zeros, or not at all in a full stream", async () => {
    const header = {
      volumeUuid: "u",
      volumeSize: 16 * CS,
      chunkSize: CS,
      snapshot: { guid: "u:2", id: 2, createdAt: 0 },
    };
    const zero = new Set([3, 4, 5, 8, 15]);
    const read = async (offset: number, target: Buffer) => {
      for (let i = 0; i < target.length / CS; i++)
        target.fill(zero.has(offset / CS + i) ? 0 : offset / CS + i + 1, i * CS, (i + 1) * CS);
    };
    const got = async (chunks?: number[]) => {
      const sink = collectingSink();
      await writeStream(header, read, sink, chunks);
      const out: Array<[number, number, number]> = [];
      for await (const c of new StreamReader(pieces(sink.bytes())).chunks())
        out.push([c.chunk, c.count, c.data ? c.data[0]! : 0]);
      return out;
    };
    expect(await got([0, 1, 3, 4, 5, 6, 8, 9, 15])).toEqual([
      [0, 1, 1],
      [1, 1, 2],
      [3, 3, 0],
      [6, 1, 7],
      [8, 1, 0],
      [9, 1, 10],
      [15, 1, 0],
    ]);
    const full = await got();
    expect(full.map(([c]) => c)).toEqual([0, 1, 2, 6, 7, 9, 10, 11, 12, 13, 14]);
  });

  it("are refused with any one byte flipped", async () => {
    for (const s of [full, incremental]) {
      // Every byte of the header and the records, and some of the data.
      const spots = new Set<number>();
      for (let i = 0; i < HEADER + s.readUInt32LE(12); i++) spots.add(i);
      for (const r of records(s)) {
        for (let i = 0; i < RECORD; i++) spots.add(r.at + i);
        if (r.length > RECORD) for (const i of [0, 1, CS / 2, CS - 1]) spots.add(r.at + RECORD + i);
      }
      for (const at of spots) {
        const bad = Buffer.from(s);
        bad[at] = bad[at]! ^ (1 << (at % 8));
        await refused(bad, `byte ${at} flipped`);
      }
    }
  });

  it("are refused cut short anywhere, or with bytes after the end", async () => {
    await withSeed(seeds(1)[0]!, async (rand) => {
      for (let i = 0; i < 50; i++) {
        const at = int(rand, 0, incremental.length - 1);
        expect(await refused(incremental.subarray(0, at), `cut at ${at}`)).toMatch(/cut short/);
      }
    });
    for (const r of records(incremental))
      expect(await refused(incremental.subarray(0, r.at), `cut at ${r.at}`)).toMatch(/cut short/);
    const longer = Buffer.concat([incremental, Buffer.from([0])]);
    expect(await refused(longer, "a byte added")).toMatch(/follow its end/);
  });

  it("are refused with two records swapped, or one dropped", async () => {
    const rs = records(full);
    const part = (r: { at: number; length: number }) => full.subarray(r.at, r.at + r.length);
    const swapped = Buffer.concat([
      full.subarray(0, rs[0]!.at),
      part(rs[1]!),
      part(rs[0]!),
      full.subarray(rs[2]!.at),
    ]);
    expect(await refused(swapped, "records swapped")).toMatch(/out of order/);
    const dropped = Buffer.concat([full.subarray(0, rs[1]!.at), full.subarray(rs[2]!.at)]);
    expect(await refused(dropped, "a record dropped")).toMatch(/checksum of the whole stream/);
  });

  it("are refused from a newer format version", async () => {
    const newer = Buffer.from(full);
    newer.writeUInt32LE(2, 8);
    newer.writeUInt32LE(crc32c(newer.subarray(0, 20)), 20);
    expect(await refused(newer, "version 2")).toMatch(/upgrade/);
    expect(await refused(Buffer.from("not a stream at all, just text"), "text")).toMatch(/magic/);
  });
});

describe("the stream writer", () => {
  it("gives a sink that lets go of its pieces late the same bytes", async () => {
    // Chunks of 64 KiB, read a MiB (a run) at a time; whole runs of zeros send nothing in a full
    // stream, so a write can stay under way while the runs after it are read.
    const cs = 64 * 1024;
    const runs = 48;
    for (const seed of seeds(3)) {
      await withSeed(seed, async (rand) => {
        const zeroRun = Array.from({ length: runs }, () => int(rand, 0, 2) === 0);
        const header = {
          volumeUuid: "u",
          volumeSize: runs * 16 * cs,
          chunkSize: cs,
          snapshot: { guid: "u:1", id: 1, createdAt: 0 },
        };
        const read = async (offset: number, target: Buffer) => {
          for (let at = 0; at < target.length; at += 4) {
            const byte = offset + at;
            const zero = zeroRun[Math.floor(byte / (16 * cs))] || (byte / cs) % 5 === 3;
            target.writeUInt32LE(zero ? 0 : (byte * 2654435761) >>> 0, at);
          }
        };
        const reference = collectingSink();
        await writeStream(header, read, reference);
        const want = reference.bytes();

        // Each write takes its place when called, and copies its pieces only when it is done: the
        // runs read meanwhile must not go into the buffers it still holds.
        const got = Buffer.alloc(want.length);
        let at = 0;
        const late = {
          write: (parts: readonly Buffer[]) => {
            const position = at;
            for (const p of parts) at += p.length;
            return new Promise<void>((done) =>
              setTimeout(
                () => {
                  Buffer.concat(parts).copy(got, position);
                  done();
                },
                int(rand, 0, 3),
              ),
            );
          },
        };
        await writeStream(header, read, late);
        expect(at).toBe(want.length);
        expect(got.equals(want)).toBe(true);
      });
    }
  });
});
