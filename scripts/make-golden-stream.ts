// Builds the golden send streams of format version 1 (test/fixtures/golden-stream-v1/) from the
// golden store: a full stream of its first snapshot and an incremental one from it to the second.
// It never overwrites an existing fixture unless given --force.
//
// Usage: tsx scripts/make-golden-stream.ts [--force]

import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CowVolume, collectingSink, NodeHostFs, snapshotStream } from "../src/cow/index.js";
import { GOLDEN_DIR } from "../test/helpers/golden-pattern.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const GOLDEN_STREAMS = "test/fixtures/golden-stream-v1";
const target = join(root, GOLDEN_STREAMS);
const host = new NodeHostFs();

async function collect(stream: ReturnType<typeof snapshotStream>): Promise<Buffer> {
  const sink = collectingSink();
  await stream.write(sink);
  return sink.bytes();
}

async function main(): Promise<number> {
  if ((await host.exists(target)) && !process.argv.includes("--force")) {
    console.error(`golden: ${relative(root, target)} exists (pass --force to replace it)`);
    return 1;
  }
  const vol = await CowVolume.open(host, join(root, GOLDEN_DIR), { readOnly: true });
  try {
    await mkdir(target, { recursive: true });
    await writeFile(join(target, "full-1"), await collect(snapshotStream(vol, 1)));
    await writeFile(
      join(target, "incremental-1-2"),
      await collect(snapshotStream(vol, 2, { base: 1 })),
    );
  } finally {
    await vol.close();
  }
  console.log(`golden: wrote ${relative(root, target)}`);
  return 0;
}

process.exitCode = await main();
