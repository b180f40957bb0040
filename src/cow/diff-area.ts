// One snapshot's differences area: preserved original chunks (data file) and their index
// (append-only, checksummed records in batches). It never decides when to copy; the volume does.

import { basename, join } from "node:path";
import { CorruptStoreError } from "../errors.js";
import {
  type AreaHeader,
  crc,
  DATA_HEADER_SIZE,
  decodeAreaHeader,
  decodeRecord,
  encodeAreaHeader,
  encodeRecord,
  FORMAT_VERSION,
  INDEX_HEADER_SIZE,
  KIND_BATCH,
  KIND_ENTRY,
  RECORD_SIZE,
  ZERO_SLOT,
} from "./format.js";
import type { HostFile, HostFs } from "./host.js";

/** Where a preserved chunk lives: a data slot with its checksum, or ZERO_SLOT for zeros. */
export interface AreaEntry {
  slot: number;
  dataCrc: number;
}

/** Chunks written to an area's data file, to be published in its index. */
export interface Batch {
  made: Array<[number, AreaEntry]>;
  slots: number;
}

export const dataPath = (dir: string, id: number) => join(dir, "diff", `${id}.data`);
export const indexPath = (dir: string, id: number) => join(dir, "diff", `${id}.index`);

/** What a scan of an index file found: the entries of its complete batches, and what is wrong. */
export interface IndexScan {
  entries: Map<number, AreaEntry>;
  /** Records (batch headers and entries) in complete, valid batches. */
  records: number;
  batches: number;
  /** Bytes after the last complete batch that are the torn tail of an interrupted batch. */
  tornBytes: number;
  problems: string[];
}

/**
 * Reads the records of an index file body. Recovery stops at the first batch that is incomplete
 * or fails its checksum. What follows it may only be the rest of that same (last, unsynced) batch;
 * a valid record of any other batch after it means the file is damaged, not torn.
 */
export function scanIndex(body: Buffer, chunkCount: number, dataSlots: number): IndexScan {
  const entries = new Map<number, AreaEntry>();
  const problems: string[] = [];
  let pos = 0;
  let batches = 0;
  const total = Math.floor(body.length / RECORD_SIZE);
  for (;;) {
    const head = pos < total ? decodeRecord(body, pos * RECORD_SIZE) : null;
    if (!head || head.kind !== KIND_BATCH || head.batch !== batches + 1) break;
    if (pos + 1 + head.count > total) break;
    const batch: Array<[number, AreaEntry]> = [];
    for (let i = 1; i <= head.count; i++) {
      const r = decodeRecord(body, (pos + i) * RECORD_SIZE);
      if (!r || r.kind !== KIND_ENTRY || r.batch !== head.batch) break;
      batch.push([r.chunk, { slot: r.slot, dataCrc: r.dataCrc }]);
    }
    if (batch.length !== head.count) break;
    for (const [chunk, e] of batch) {
      const at = `record for chunk ${chunk} in batch ${head.batch}`;
      if (chunk >= chunkCount)
        problems.push(`${at}: chunk is beyond the volume (${chunkCount} chunks)`);
      else if (e.slot !== ZERO_SLOT && e.slot >= dataSlots)
        problems.push(`${at}: slot ${e.slot} is beyond the data file (${dataSlots} slots)`);
      else if (entries.has(chunk)) problems.push(`${at}: chunk preserved twice`);
      else entries.set(chunk, e);
    }
    batches++;
    pos += 1 + head.count;
  }
  // Anything after the last complete batch must belong to the one interrupted batch.
  for (let i = pos; i < total; i++) {
    const r = decodeRecord(body, i * RECORD_SIZE);
    if (r && r.batch !== batches + 1) {
      problems.push(
        `record ${i} is damaged or missing: a valid record of batch ${r.batch} follows at record ${i}`,
      );
      break;
    }
  }
  return { entries, records: pos, batches, tornBytes: body.length - pos * RECORD_SIZE, problems };
}

export class DiffArea {
  /** Chunks preserved here. */
  readonly entries: Map<number, AreaEntry>;
  private pins = 0;
  private deleted = false;
  private onUnpinned: (() => void) | undefined;
  /** Next data slot for a batch to write: past the slots of batches written, not yet published. */
  private nextFreeSlot: number;

  private constructor(
    readonly id: number,
    readonly chunkSize: number,
    private readonly data: HostFile,
    private readonly index: HostFile,
    entries: Map<number, AreaEntry>,
    /** Records in the index file, all durable. */
    public records: number,
    private batches: number,
    /** Data slots of published batches. */
    private nextSlot: number,
  ) {
    this.entries = entries;
    this.nextFreeSlot = nextSlot;
  }

  static async create(host: HostFs, dir: string, id: number, chunkSize: number): Promise<DiffArea> {
    const header = (kind: AreaHeader["kind"]) =>
      encodeAreaHeader({ kind, version: FORMAT_VERSION, chunkSize, areaId: id });
    const data = await host.open(dataPath(dir, id), { create: true, direct: true });
    const index = await host.open(indexPath(dir, id), { create: true });
    await data.truncate(0);
    await data.write(header("data"), 0);
    await index.truncate(0);
    await index.write(header("index"), 0);
    await Promise.all([data.sync(), index.sync()]);
    await host.syncDir(join(dir, "diff"));
    return new DiffArea(id, chunkSize, data, index, new Map(), 0, 0, 0);
  }

  /**
   * Opens an existing area. `committed` records are known durable and must all be valid. When
   * `exact` (a frozen area), records past them are an interrupted merge and are dropped; otherwise
   * (the newest area after a crash) complete batches past them are kept and a torn one dropped.
   * Dropped records are cut off the file unless `readOnly`.
   */
  static async load(
    host: HostFs,
    dir: string,
    id: number,
    opts: {
      chunkSize: number;
      chunkCount: number;
      committed: number;
      exact: boolean;
      readOnly: boolean;
    },
  ): Promise<{ area: DiffArea; dropped: number }> {
    const { chunkSize, committed, readOnly } = opts;
    for (const path of [dataPath(dir, id), indexPath(dir, id)]) {
      if (!(await host.exists(path))) {
        throw new CorruptStoreError(`diff/${basename(path)}`, `missing (snapshot ${id})`);
      }
    }
    const data = await host.open(dataPath(dir, id), { readOnly, direct: true });
    const index = await host.open(indexPath(dir, id), { readOnly });
    try {
      const idxName = `diff/${id}.index`;
      const dataName = `diff/${id}.data`;
      const dataSize = await data.size();
      const idxBuf = Buffer.alloc(await index.size());
      await index.read(idxBuf, 0);
      const dataHead = Buffer.alloc(Math.min(dataSize, INDEX_HEADER_SIZE));
      await data.read(dataHead, 0);
      checkHeader(dataName, decodeAreaHeader(dataHead, "data"), id, chunkSize);
      checkHeader(idxName, decodeAreaHeader(idxBuf, "index"), id, chunkSize);
      const dataSlots = Math.max(0, Math.ceil((dataSize - DATA_HEADER_SIZE) / chunkSize));
      const body = idxBuf.subarray(INDEX_HEADER_SIZE);
      const scan = scanIndex(body, opts.chunkCount, dataSlots);
      if (scan.problems.length > 0) throw new CorruptStoreError(idxName, scan.problems.join("; "));
      if (scan.records < committed) {
        throw new CorruptStoreError(
          idxName,
          `${committed} records are committed but only ${scan.records} are valid (truncated or damaged at record ${scan.records})`,
        );
      }
      let { records, entries, batches } = scan;
      if (records > committed && opts.exact) {
        const cut = scanIndex(
          body.subarray(0, committed * RECORD_SIZE),
          opts.chunkCount,
          dataSlots,
        );
        records = cut.records;
        entries = cut.entries;
        batches = cut.batches;
      }
      const dropped = Math.floor(body.length / RECORD_SIZE) - records;
      if (!readOnly && body.length > records * RECORD_SIZE) {
        await index.truncate(INDEX_HEADER_SIZE + records * RECORD_SIZE);
        await index.sync();
      }
      let nextSlot = 0;
      for (const e of entries.values())
        if (e.slot !== ZERO_SLOT) nextSlot = Math.max(nextSlot, e.slot + 1);
      return {
        area: new DiffArea(id, chunkSize, data, index, entries, records, batches, nextSlot),
        dropped,
      };
    } catch (e) {
      await Promise.allSettled([data.close(), index.close()]);
      throw e;
    }
  }

  /** Bytes this area occupies in the shadow storage: preserved data plus index. */
  get bytesUsed(): number {
    return this.nextSlot * this.chunkSize + this.records * RECORD_SIZE;
  }

  /**
   * Preserves chunks: `write` then `publish`. Costs two syncs whatever the number of chunks.
   * The caller serialises appends to one area.
   */
  async append(chunks: ReadonlyArray<{ chunk: number; data: Buffer | null }>): Promise<void> {
    await this.publish(await this.write(chunks));
  }

  /**
   * Writes the chunks' data to slots of their own, neither durable nor visible: a batch to
   * `publish`. `data` null or all zeros stores no data. Batches are published in the order they
   * were written, each after the one before; the next may be written while one is published.
   */
  async write(chunks: ReadonlyArray<{ chunk: number; data: Buffer | null }>): Promise<Batch> {
    const payload: Buffer[] = [];
    const firstSlot = this.nextFreeSlot;
    const made: Array<[number, AreaEntry]> = [];
    for (const { chunk, data } of chunks) {
      let entry: AreaEntry = { slot: ZERO_SLOT, dataCrc: 0 };
      const dataCrc = data ? crc(data) : 0;
      // Only a chunk with the checksum of zeros is compared with zeros: one pass over the rest.
      if (data && !(dataCrc === zeros(data.length).crc && isZero(data))) {
        entry = { slot: firstSlot + payload.length, dataCrc };
        payload.push(data);
      }
      made.push([chunk, entry]);
    }
    this.nextFreeSlot += payload.length;
    if (payload.length > 0)
      await this.data.writev(payload, DATA_HEADER_SIZE + firstSlot * this.chunkSize);
    return { made, slots: payload.length };
  }

  /**
   * Makes a written batch durable, then visible in `entries`: its data is synced, then its index
   * records are written and synced.
   */
  async publish(b: Batch): Promise<void> {
    if (b.made.length === 0) return;
    const batch = this.batches + 1;
    const recs = Buffer.alloc((b.made.length + 1) * RECORD_SIZE);
    encodeRecord({ kind: KIND_BATCH, batch, count: b.made.length }, recs, 0);
    for (const [i, [chunk, e]] of b.made.entries())
      encodeRecord({ kind: KIND_ENTRY, batch, chunk, ...e }, recs, (i + 1) * RECORD_SIZE);
    if (b.slots > 0) await this.data.sync();
    await this.index.write(recs, INDEX_HEADER_SIZE + this.records * RECORD_SIZE);
    await this.index.sync();
    this.nextSlot += b.slots;
    this.records += b.made.length + 1;
    this.batches = batch;
    for (const [chunk, e] of b.made) this.entries.set(chunk, e);
  }

  /** Reads the preserved chunk into `target` (chunkSize bytes), verifying its checksum. */
  async readChunk(chunk: number, target: Buffer): Promise<void> {
    const e = this.entries.get(chunk);
    if (!e) throw new Error(`chunk ${chunk} is not in diff area ${this.id}`);
    await this.readSlots(e.slot, 1, target);
    if (e.slot !== ZERO_SLOT) this.verify(chunk, e, target);
  }

  /** Reads `count` consecutive slots into `target` (no checksum check: see `verify`). */
  async readSlots(slot: number, count: number, target: Buffer): Promise<void> {
    if (slot === ZERO_SLOT) {
      target.fill(0, 0, count * this.chunkSize);
      return;
    }
    await this.data.read(
      target.subarray(0, count * this.chunkSize),
      DATA_HEADER_SIZE + slot * this.chunkSize,
    );
  }

  verify(chunk: number, e: AreaEntry, bytes: Buffer): void {
    if (e.slot !== ZERO_SLOT && crc(bytes) !== e.dataCrc) {
      throw new CorruptStoreError(
        `diff/${this.id}.data`,
        `slot ${e.slot} (chunk ${chunk}): checksum mismatch`,
      );
    }
  }

  /** Keeps the files open while a read is in flight, even if the area is deleted meanwhile. */
  pin(): void {
    this.pins++;
  }

  unpin(): void {
    this.pins--;
    if (this.pins === 0 && this.onUnpinned) this.onUnpinned();
  }

  /** Closes the files once no read is in flight. */
  async close(): Promise<void> {
    if (this.deleted) return;
    this.deleted = true;
    if (this.pins > 0) await new Promise<void>((resolve) => (this.onUnpinned = resolve));
    await Promise.allSettled([this.data.close(), this.index.close()]);
  }
}

function checkHeader(file: string, h: AreaHeader | string, id: number, chunkSize: number): void {
  if (typeof h === "string") throw new CorruptStoreError(file, h);
  if (h.areaId !== id)
    throw new CorruptStoreError(file, `belongs to diff area ${h.areaId}, not ${id}`);
  if (h.chunkSize !== chunkSize)
    throw new CorruptStoreError(file, `chunk size ${h.chunkSize}, the volume's is ${chunkSize}`);
}

const zeroChunks = new Map<number, { bytes: Buffer; crc: number }>();
/** A chunk of zeros of `length` bytes, and its checksum. */
function zeros(length: number): { bytes: Buffer; crc: number } {
  let z = zeroChunks.get(length);
  if (!z) {
    const bytes = Buffer.alloc(length);
    z = { bytes, crc: crc(bytes) };
    zeroChunks.set(length, z);
  }
  return z;
}

function isZero(buf: Buffer): boolean {
  return buf.equals(zeros(buf.length).bytes);
}
