// The filesystem's lower layers formatted and mounted by hand, for tests of one layer at a time:
// superblock, journal, bitmap, metadata store, allocator, inode table. It asserts nothing.

import type { BlockDevice } from "../../src/cow/index.js";
import { Allocator } from "../../src/fs/allocator.js";
import { InodeTable } from "../../src/fs/inode-table.js";
import { Journal } from "../../src/fs/journal.js";
import { MetaStore } from "../../src/fs/meta-store.js";
import { decodeSuperblock, encodeSuperblock, newSuperblock } from "../../src/fs/superblock.js";

const BS = 4096;

/** Writes an empty bitmap, journal and superblock (no root directory: see FileSystem.mkfs). */
export async function formatLayers(dev: BlockDevice, journalBlocks = 64): Promise<void> {
  const sb = newSuperblock(dev.size / BS, journalBlocks);
  await Allocator.format(dev, sb);
  await Journal.format(dev, sb.journal);
  await dev.write(0, encodeSuperblock(sb));
  await dev.flush();
}

/** Opens the layers on a formatted device, replaying its journal. */
export async function mountLayers(dev: BlockDevice, cacheBytes?: number) {
  const head = Buffer.alloc(BS);
  await dev.read(0, head);
  const sb = decodeSuperblock(head, dev.size / BS);
  const { journal } = await Journal.open(dev, sb.journal);
  const meta = new MetaStore(dev, journal, { cacheBytes });
  const alloc = await Allocator.load(meta, sb);
  return { sb, meta, alloc, table: await InodeTable.load(meta, alloc, sb) };
}

/** `dev` as a read-only device that counts its reads (`reads`, which a test may reset). */
export function countingReads(dev: BlockDevice): { dev: BlockDevice; reads: number } {
  const counter = { dev, reads: 0 };
  counter.dev = {
    size: dev.size,
    blockSize: dev.blockSize,
    readOnly: true,
    read: (offset, target) => {
      counter.reads++;
      return dev.read(offset, target);
    },
    write: () => Promise.reject(new Error("EROFS")),
    flush: async () => {},
    close: async () => {},
  };
  return counter;
}
