// `snapshot send -o FILE` as the daemon writes it (each write at the place it takes when called,
// the base image read around the page cache): the file holds exactly the stream collected in
// memory, and reads back as the snapshot, send after send, full and incremental.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { collectingSink, StreamReader, snapshotStream } from "../../src/cow/index.js";
import type { Service } from "../../src/daemon/index.js";
import { send } from "../../src/daemon/send.js";
import { type Rand, seeds, withSeed } from "../helpers/random.js";
import { servicesEachTest } from "../helpers/service.js";

const MiB = 2 ** 20;
const SIZE = 24 * MiB;
const CS = 16 * 1024;
const openService = servicesEachTest();

/**
 * Writes `image` over the volume's chunks from `first` on, each chunk different: random bytes,
 * else (one in eight) zeros, and a whole MiB of zeros now and then (a read with nothing to send).
 */
async function scribble(s: Service, image: Buffer, rand: Rand, first: number): Promise<void> {
  for (let c = first; c < SIZE / CS; c++) {
    const chunk = image.subarray(c * CS, (c + 1) * CS);
    const zeroMiB = Math.floor((c * CS) / MiB) % 7 === 3;
    if (zeroMiB || rand() < 1 / 8) chunk.fill(0);
    else for (let i = 0; i < CS; i += 4) chunk.writeUInt32LE(Math.floor(rand() * 2 ** 32), i);
    await s.volume.write(c * CS, chunk);
  }
}

/** `image` with the stream's chunks applied, as a receive would. */
async function apply(image: Buffer, stream: Buffer): Promise<Buffer> {
  const out = Buffer.from(image);
  async function* whole() {
    yield stream;
  }
  for await (const c of new StreamReader(whole()).chunks()) {
    if (c.data) c.data.copy(out, c.chunk * CS);
    else out.fill(0, c.chunk * CS, (c.chunk + c.count) * CS);
  }
  return out;
}

describe("snapshot send to a file", () => {
  it("writes the stream collected in memory, byte for byte, send after send", async () => {
    for (const seed of seeds(1)) {
      await withSeed(seed, async (rand) => {
        const s = await openService(SIZE, CS);
        const out = join(s.store, "..", "out.stream");
        const first = Buffer.alloc(SIZE);
        await scribble(s, first, rand, 0);
        const a = await s.volume.createSnapshot({ name: "a" });
        // Changed after "a": "a" reads these from its diff area, the rest from the base image.
        const second = Buffer.from(first);
        await scribble(s, second, rand, SIZE / CS / 2);
        const b = await s.volume.createSnapshot({ name: "b" });

        const inMemory = async (id: number, opts: { base?: number } = {}) => {
          const sink = collectingSink();
          await snapshotStream(s.volume, id, opts).write(sink);
          return sink.bytes();
        };
        const full = await inMemory(a.id);
        const incremental = await inMemory(b.id, { base: a.id });
        expect((await apply(Buffer.alloc(SIZE), full)).equals(first)).toBe(true);
        expect((await apply(first, incremental)).equals(second)).toBe(true);

        for (let i = 0; i < 5; i++) {
          const r = await send(s, { snapshot: "a" }, { file: out });
          const written = await readFile(out);
          expect(r.bytes).toBe(full.length);
          expect(written.equals(full), `full send ${i}`).toBe(true);
          const inc = await send(s, { snapshot: "b", from: "a" }, { file: out });
          expect(inc.bytes).toBe(incremental.length);
          expect((await readFile(out)).equals(incremental), `incremental send ${i}`).toBe(true);
        }
      });
    }
  }, 120_000);
});
