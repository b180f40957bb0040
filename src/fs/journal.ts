// The filesystem's write-ahead journal: whole metadata blocks committed atomically in checksummed
// transactions inside the volume, replayed at open. It never decides what goes into a transaction.

import { crc32c } from "@node-rs/crc32";
import { type BlockDevice, readBlock } from "../cow/index.js";
import { CorruptStoreError, einval, erofs } from "../errors.js";

export const JOURNAL_MAGIC = "SHDWJRNL";
const DESC_MAGIC = "SHDWJDSC";
const COMMIT_MAGIC = "SHDWJCMT";
const JOURNAL_VERSION = 1;
const HEAD = 64; // bytes of header at the start of every journal block
/** Home block numbers one descriptor block holds. */
export const PER_DESCRIPTOR = (4096 - HEAD) / 8;

/** Where the journal lives on the device: `blocks` blocks from block `start`. */
export interface JournalRegion {
  start: number;
  blocks: number;
}

/**
 * Layout (blocks of the region): 0 = journal header {magic, version, region size, sequence of
 * the first transaction to replay, crc}; from 1 on, transactions back to back:
 *   descriptor blocks {magic, seq, count, index, home block numbers...} × ceil(count / 504)
 *   count data blocks, the new images of those home blocks
 *   commit block {magic, seq, count, crc32c of descriptors and data}
 * A transaction counts only once its commit block is valid; replay stops at the first that is not.
 */
/**
 * Only the MetaStore calls `commit` and `checkpoint`, holding its lock (`MetaStore.run`, `commit`,
 * `checkpoint`), so that lock guards every field below; `open` runs before anyone else has it.
 */
export class Journal {
  /**
   * Blocks of the log (region minus header) in use by committed, not yet checkpointed transactions.
   * Guarded by the metadata lock.
   */
  private used = 0;
  /**
   * Transactions were replayed at open: the header still names them until a checkpoint. Guarded by
   * the metadata lock.
   */
  private replayed = false;
  /**
   * Home blocks that a committed, not yet checkpointed transaction holds: a replay rewrites them.
   * Guarded by the metadata lock.
   */
  private readonly logged = new Set<number>();
  private readonly checkpointListeners: Array<() => void> = [];
  /** The largest transaction that fits in this journal, in home blocks. */
  readonly capacity: number;

  private constructor(
    private readonly dev: BlockDevice,
    private readonly region: JournalRegion,
    /** Sequence number the next transaction gets. Guarded by the metadata lock. */
    private seq: number,
    /** Home images of replayed transactions, kept in memory when the device is read-only. */
    readonly overlay: Map<number, Buffer>,
  ) {
    this.capacity = largest(region.blocks - 1);
  }

  /** Writes an empty journal into the region (mkfs). */
  static async format(dev: BlockDevice, region: JournalRegion): Promise<void> {
    if (region.blocks < 8)
      throw einval(`journal of ${region.blocks} blocks: at least 8 are needed`);
    await dev.write(region.start * dev.blockSize, header(dev.blockSize, region, 1));
  }

  /**
   * Opens the journal and replays every committed transaction: onto the device when it is
   * writable (then the log is emptied), into `overlay` when it is read-only.
   */
  static async open(
    dev: BlockDevice,
    region: JournalRegion,
  ): Promise<{ journal: Journal; replayed: number }> {
    const head = await readBlock(dev, region.start);
    const problem = checkHeader(head, region);
    if (problem) throw new CorruptStoreError("journal header", problem);
    const first = Number(head.readBigUInt64LE(24));
    const txs = await scan(dev, region, first);
    const overlay = new Map<number, Buffer>();
    for (const tx of txs) for (const [home, image] of tx) overlay.set(home, image);
    const journal = new Journal(
      dev,
      region,
      first + txs.length,
      dev.readOnly ? overlay : new Map(),
    );
    if (!dev.readOnly && txs.length > 0) {
      for (const [home, image] of overlay) await dev.write(home * dev.blockSize, image);
      journal.replayed = true;
      await journal.checkpoint();
    }
    return { journal, replayed: txs.length };
  }

  /** Log blocks a transaction of `count` home blocks takes. */
  static footprint(count: number): number {
    return Math.ceil(count / PER_DESCRIPTOR) + count + 1;
  }

  /**
   * Commits `blocks` (home block number → new 4 KiB image) as one atomic transaction: written to
   * the log and made durable with one device flush, then written to their home locations (made
   * durable by the next flush or checkpoint). Writes the caller made to the device before this
   * call (file data) are durable when it resolves. Calls must not overlap.
   */
  async commit(blocks: ReadonlyMap<number, Uint8Array>): Promise<void> {
    if (this.dev.readOnly) throw erofs("journal");
    const count = blocks.size;
    if (count === 0) return;
    if (count > this.capacity)
      throw einval(`transaction of ${count} blocks exceeds the journal (${this.capacity})`);
    if (1 + this.used + Journal.footprint(count) > this.region.blocks) await this.checkpoint();
    const bs = this.dev.blockSize;
    const homes = [...blocks.keys()];
    const ndesc = Math.ceil(count / PER_DESCRIPTOR);
    const log = Buffer.alloc((ndesc + count + 1) * bs);
    for (let d = 0; d < ndesc; d++) {
      const blk = log.subarray(d * bs, (d + 1) * bs);
      blk.write(DESC_MAGIC, 0, "latin1");
      blk.writeBigUInt64LE(BigInt(this.seq), 8);
      blk.writeUInt32LE(count, 16);
      blk.writeUInt32LE(d, 20);
      homes.slice(d * PER_DESCRIPTOR, (d + 1) * PER_DESCRIPTOR).forEach((h, i) => {
        blk.writeBigUInt64LE(BigInt(h), HEAD + i * 8);
      });
    }
    homes.forEach((h, i) => {
      const image = blocks.get(h)!;
      if (image.length !== bs) throw einval(`block ${h}: image of ${image.length} bytes`);
      log.set(image, (ndesc + i) * bs);
    });
    const commit = log.subarray((ndesc + count) * bs);
    commit.write(COMMIT_MAGIC, 0, "latin1");
    commit.writeBigUInt64LE(BigInt(this.seq), 8);
    commit.writeUInt32LE(count, 16);
    commit.writeUInt32LE(crc32c(log.subarray(0, (ndesc + count) * bs)), 20);
    commit.writeUInt32LE(crc32c(commit.subarray(0, 60)), 60);
    await this.dev.write((this.region.start + 1 + this.used) * bs, log);
    await this.dev.flush();
    this.used += ndesc + count + 1;
    this.seq++;
    for (const h of homes) this.logged.add(h);
    for (const [h, image] of blocks) await this.dev.write(h * bs, image);
  }

  /**
   * True when a replay at the next open would write `block`: its image is in a committed
   * transaction that is not checkpointed yet. Such a block, once freed, must not take file data
   * (written in place, outside the journal) before the next checkpoint.
   */
  holds(block: number): boolean {
    return this.logged.has(block);
  }

  /** Calls `fn` after each checkpoint, once the log is empty. */
  onCheckpoint(fn: () => void): void {
    this.checkpointListeners.push(fn);
  }

  /**
   * Makes every home write durable and empties the log: after it, the device reads consistently
   * with no replay (what a snapshot of a flushed filesystem relies on).
   */
  async checkpoint(): Promise<void> {
    if (this.dev.readOnly) throw erofs("journal");
    await this.dev.flush();
    // A header that is already current is not rewritten: that would cost a copy-on-write of its
    // chunk after every snapshot, for nothing.
    if (this.used > 0 || this.replayed) {
      await this.dev.write(
        this.region.start * this.dev.blockSize,
        header(this.dev.blockSize, this.region, this.seq),
      );
      await this.dev.flush();
    }
    this.used = 0;
    this.replayed = false;
    this.logged.clear();
    for (const listen of this.checkpointListeners) listen();
  }

  /** True when every committed transaction has been checkpointed. */
  get empty(): boolean {
    return this.used === 0;
  }
}

/** The most home blocks a transaction that takes at most `logBlocks` may hold. */
function largest(logBlocks: number): number {
  let n = logBlocks - 2;
  while (Journal.footprint(n) > logBlocks) n--;
  return n;
}

function header(bs: number, region: JournalRegion, seq: number): Buffer {
  const b = Buffer.alloc(bs);
  b.write(JOURNAL_MAGIC, 0, "latin1");
  b.writeUInt32LE(JOURNAL_VERSION, 8);
  b.writeUInt32LE(region.blocks, 12);
  b.writeBigUInt64LE(BigInt(region.start), 16);
  b.writeBigUInt64LE(BigInt(seq), 24);
  b.writeUInt32LE(crc32c(b.subarray(0, 60)), 60);
  return b;
}

function checkHeader(b: Buffer, region: JournalRegion): string | undefined {
  if (b.toString("latin1", 0, 8) !== JOURNAL_MAGIC) return "bad magic";
  if (b.readUInt32LE(60) !== crc32c(b.subarray(0, 60))) return "checksum mismatch";
  const version = b.readUInt32LE(8);
  if (version !== JOURNAL_VERSION) return `unknown journal version ${version}`;
  if (b.readUInt32LE(12) !== region.blocks || Number(b.readBigUInt64LE(16)) !== region.start) {
    return `region ${b.readBigUInt64LE(16)}+${b.readUInt32LE(12)} does not match the superblock's ${region.start}+${region.blocks}`;
  }
  return undefined;
}

/** Reads committed transactions from the start of the log, stopping at the first invalid one. */
async function scan(
  dev: BlockDevice,
  region: JournalRegion,
  firstSeq: number,
): Promise<Array<Map<number, Buffer>>> {
  const bs = dev.blockSize;
  const txs: Array<Map<number, Buffer>> = [];
  let pos = 1;
  for (let seq = firstSeq; pos < region.blocks; seq++) {
    const d0 = await readBlock(dev, region.start + pos);
    if (d0.toString("latin1", 0, 8) !== DESC_MAGIC || Number(d0.readBigUInt64LE(8)) !== seq) break;
    const count = d0.readUInt32LE(16);
    const ndesc = Math.ceil(count / PER_DESCRIPTOR);
    const total = ndesc + count + 1;
    if (count === 0 || pos + total > region.blocks) break;
    const log = Buffer.alloc(total * bs);
    await dev.read((region.start + pos) * bs, log);
    const commit = log.subarray((ndesc + count) * bs);
    const valid =
      commit.toString("latin1", 0, 8) === COMMIT_MAGIC &&
      commit.readUInt32LE(60) === crc32c(commit.subarray(0, 60)) &&
      Number(commit.readBigUInt64LE(8)) === seq &&
      commit.readUInt32LE(16) === count &&
      commit.readUInt32LE(20) === crc32c(log.subarray(0, (ndesc + count) * bs));
    if (!valid) break;
    const tx = new Map<number, Buffer>();
    for (let i = 0; i < count; i++) {
      const d = log.subarray(Math.floor(i / PER_DESCRIPTOR) * bs);
      const home = Number(d.readBigUInt64LE(HEAD + (i % PER_DESCRIPTOR) * 8));
      if (home >= dev.size / bs)
        throw new CorruptStoreError(
          "journal",
          `transaction ${seq} names block ${home}, beyond the device`,
        );
      tx.set(home, Buffer.from(log.subarray((ndesc + i) * bs, (ndesc + i + 1) * bs)));
    }
    txs.push(tx);
    pos += total;
  }
  return txs;
}
