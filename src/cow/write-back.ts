// The copy-on-write policy for live writes: which chunk goes straight to the base image, which waits
// staged until its original is published. It never overwrites a base chunk before that is durable.

import type { ChunkStore, Written } from "./chunk-store.js";
import type { ReadHolds } from "./gate.js";
import type { HostFile } from "./host.js";

/** What a WriteBack works on and whom it asks; its owner (the volume) provides them. */
export interface WriteBackParts {
  /** The chain of diff areas: where originals go. */
  store: ChunkStore;
  /** The production volume's blocks. */
  base: HostFile;
  /** Snapshot reads of the base image; a batch overwrites the base only once they have settled. */
  baseReads: ReadHolds;
  /** Bytes of chunks staged in memory before a batch starts. */
  batchBytes: number;
  /**
   * The space policy: finds room for `bytes` more of diff area (it may delete the oldest
   * snapshots) or throws (ENOSPC). False when no snapshot is left, so nothing needs preserving.
   * Called by a write before it applies any byte; the store may change meanwhile.
   */
  makeRoom(bytes: number, what: string): Promise<boolean>;
  /** A batch failed in the background: the owner stops serving (later calls fail with EIO). */
  stop(e: Error): void;
}

interface Landing {
  batch: Map<number, Staged>;
  run: Promise<void>;
}

/** A chunk whose original must be preserved before its new contents reach the base image. */
interface Staged {
  chunk: number;
  /** The snapshot whose diff area takes the original (the newest when the chunk was staged). */
  area: number;
  /**
   * Staged while the chunk was landing: its original is preserved by that earlier batch, so
   * this one only writes the new contents to the base image, after that batch's.
   */
  follows: boolean;
  /** The chunk as the snapshot holds it; null until the batch lands when the first write covered all of it. */
  original: Buffer | null;
  data: Buffer;
  /** Resolves once `data` holds the chunk's contents (a partial first write reads the original). */
  ready: Promise<void>;
  /** Live reads still to copy from `data`: until they have, it is not staged again. */
  readers: number;
  /** Its original is published in its area (which counts it in its usage from then on). */
  published: boolean;
}

/**
 * Concurrency contract:
 * - A snapshot read never sees a write made after the snapshot, whatever the interleaving: a base
 *   chunk is overwritten only after its original is visible in a diff area and every snapshot
 *   read that chose the base for it before then has finished.
 * - Live reads see every write that resolved before they started; a live read racing a write to
 *   the same range may see either contents per chunk (as with pread/pwrite on a file).
 * - Writes resolve once visible to reads; durability comes from `commit` plus a base sync.
 * - Precondition: an area joins the chain (a snapshot is taken) only after `commit` has resolved
 *   with no write since; the staged chunks of the interval before would otherwise be taken as
 *   this one's. Areas may leave the chain at any time (an eviction in `makeRoom`).
 */
export class WriteBack {
  // Every field: guarded by the volume gate, entered shared by I/O (which changes them only in
  // synchronous steps, consistent at every await) and exclusive by administration (after `commit`).
  private staged = new Map<number, Staged>();
  /**
   * Batches landing, oldest first: writes start a new one while fewer than two are (a commit
   * may add a third); each writes its originals while the one before it publishes.
   */
  private landing: Landing[] = [];
  /** Settles when the newest batch has written its originals (see `land`). */
  private written: Promise<void> = Promise.resolve();
  /** Chunks a write found room for and has yet to stage. */
  private planned = 0;
  /** Where a batch reads the originals of chunks written whole (see `readOriginals`). */
  private originals = Buffer.alloc(0);
  /** Chunk buffers of landed batches, staged again rather than allocated (see `readOriginals`). */
  private readonly spare: Buffer[] = [];

  private readonly store: ChunkStore;
  private readonly base: HostFile;
  private readonly batchBytes: number;
  private readonly cs: number;

  constructor(private readonly parts: WriteBackParts) {
    this.store = parts.store;
    this.base = parts.base;
    this.batchBytes = parts.batchBytes;
    this.cs = parts.store.chunkSize;
  }

  private needsCopy(chunk: number): boolean {
    const newest = this.store.newest();
    return newest !== undefined && !this.store.holds(newest, chunk);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    const { cs } = this;
    const first = Math.floor(offset / cs);
    const last = Math.floor((offset + data.length - 1) / cs);
    // Room for every chunk to preserve is found before any byte is applied, so a write that
    // does not fit under the shadow storage limit fails whole (ENOSPC), never half-done.
    const fresh = new Set<number>();
    for (let c = first; c <= last; c++)
      if (!this.staged.has(c) && !this.landed(c) && this.needsCopy(c)) fresh.add(c);
    if (fresh.size > 0) {
      if (await this.parts.makeRoom(fresh.size * this.store.chunkCost, "write")) {
        this.planned += fresh.size;
      } else fresh.clear();
    }
    let runStart = offset;
    let runEnd = offset;
    let waited = false;
    const direct = async () => {
      if (runEnd === runStart) return;
      waited = true;
      await this.base.write(data.subarray(runStart - offset, runEnd - offset), runStart);
    };
    for (let c = first; c <= last; c++) {
      const lo = Math.max(offset, c * cs);
      const hi = Math.min(offset + data.length, (c + 1) * cs);
      if (this.staged.has(c) || fresh.has(c) || this.landed(c)) {
        await direct();
        runStart = runEnd = hi;
        if (await this.stage(c, fresh.has(c), lo - c * cs, data.subarray(lo - offset, hi - offset)))
          continue;
        runStart = lo;
      }
      runEnd = hi;
    }
    await direct();
    // A batch lands on the I/O threads: a caller whose writes are all staged in memory, one
    // after another, never waits for I/O and would keep the batch's completions from running.
    if (this.landing.length > 0 && !waited) await new Promise(setImmediate);
    while (this.stagedBytes >= this.batchBytes) {
      if (this.landing.length < 2) {
        this.land().catch((e: Error) => this.parts.stop(e)); // later calls then fail with EIO
        break;
      }
      if (this.stagedBytes < 2 * this.batchBytes) break;
      await this.landing[0]!.run;
    }
  }

  /**
   * Shadow storage promised and not yet used: chunks planned or staged, and chunks of the running
   * batches not yet in their diff area (an area's size grows in the same step as its entries).
   */
  get reservedBytes(): number {
    let n = this.planned;
    for (const s of this.staged.values()) if (!s.follows) n++;
    for (const l of this.landing)
      for (const s of l.batch.values()) if (!s.follows && !s.published) n++;
    return n * this.store.chunkCost;
  }

  private get stagedBytes(): number {
    return this.staged.size * this.cs;
  }

  /**
   * Applies a write to the staged copy of a chunk, staging it first (with the room `reserved`
   * for it). False when the chunk no longer needs a copy: the caller writes it to the base.
   * A chunk still landing is staged again, on top of its landing contents, without waiting.
   */
  private async stage(
    chunk: number,
    reserved: boolean,
    at: number,
    bytes: Uint8Array,
  ): Promise<boolean> {
    if (reserved) this.planned--; // from here the staged entry itself holds the room
    let s = this.staged.get(chunk);
    if (!s) {
      const prior = this.landed(chunk);
      if (!prior && !this.needsCopy(chunk)) return false;
      const data = this.spare.pop() ?? Buffer.allocUnsafe(this.cs);
      const made: Staged = {
        chunk,
        area: prior?.area ?? this.store.newest()!,
        follows: prior !== undefined,
        original: null,
        data,
        ready: Promise.resolve(),
        readers: 0,
        published: false,
      };
      this.staged.set(chunk, made);
      // A write of the whole chunk needs neither its original (the batch reads those in long
      // runs) nor its landing contents.
      if (bytes.length === this.cs) {
        data.set(bytes);
        return true;
      }
      if (prior) {
        prior.readers++; // its buffer is not reused before it is copied
        made.ready = prior.ready.then(() => {
          data.set(prior.data);
          prior.readers--;
        });
      } else {
        made.ready = this.base.read(data, chunk * this.cs).then(() => {
          made.original = Buffer.from(data);
        });
      }
      s = made;
    }
    await s.ready;
    s.data.set(bytes, at);
    return true;
  }

  /** Lands every staged chunk, and waits for every batch landing. */
  async commit(): Promise<void> {
    if (this.staged.size > 0) void this.land().catch(() => {}); // its failure is thrown below
    while (this.landing.length > 0) await this.landing.at(-1)!.run;
  }

  /**
   * Lands the staged chunks as one batch: their originals are read and written to the diff
   * areas, then published there (two syncs per area), then their new contents written to the
   * base. Batches write their originals one at a time (they share one buffer) and publish in
   * the same order, so the next batch writes while this one waits for its syncs.
   */
  private land(): Promise<void> {
    const batch = this.staged;
    this.staged = new Map();
    const before = this.landing.at(-1)?.run;
    const writtenBefore = this.written;
    let written = () => {};
    this.written = new Promise<void>((resolve) => (written = resolve));
    const l: Landing = { batch, run: Promise.resolve() };
    l.run = this.landBatch(batch, writtenBefore, before, written).finally(() => {
      written();
      this.landing.splice(this.landing.indexOf(l), 1);
      // No new read can reach these buffers: the batch is in neither the staged nor the landing.
      for (const s of batch.values())
        if (s.readers === 0 && this.spare.length < (2 * this.batchBytes) / this.cs)
          this.spare.push(s.data);
    });
    this.landing.push(l);
    return l.run;
  }

  private async landBatch(
    batch: Map<number, Staged>,
    writtenBefore: Promise<void>,
    before: Promise<void> | undefined,
    written: () => void,
  ): Promise<void> {
    const { cs } = this;
    const list = [...batch.values()].sort((a, b) => a.chunk - b.chunk);
    await writtenBefore;
    await Promise.all(list.map((s) => s.ready));
    const byArea = new Map<number, Staged[]>();
    for (const s of list) {
      // An area deleted since (evicted) protects no snapshot any more: nothing to preserve.
      if (s.follows || !this.store.has(s.area)) continue;
      const group = byArea.get(s.area) ?? [];
      group.push(s);
      byArea.set(s.area, group);
    }
    const releases = [...byArea.keys()].map((area) => this.store.hold(area));
    try {
      await this.readOriginals([...byArea.values()].flat().filter((s) => !s.original));
      const batches: Array<[Written, Staged[]]> = [];
      for (const [area, group] of byArea) {
        const originals = group.map((s) => ({ chunk: s.chunk, data: original(s) }));
        batches.push([await this.store.write(area, originals), group]);
      }
      written();
      await before; // a failed batch stops the volume: none after it publishes
      for (const [b, group] of batches) {
        await this.store.publish(b);
        for (const s of group) s.published = true;
      }
    } finally {
      for (const release of releases) release();
    }
    // Snapshot reads that chose the base before the originals became visible finish first.
    await this.parts.baseReads.settled();
    for (const run of runs(list)) {
      await this.base.writev(
        run.map((s) => s.data),
        run[0]!.chunk * cs,
      );
    }
  }

  /**
   * Reads the originals of whole-chunk writes from the base, one read per run of chunks, into
   * one buffer kept from batch to batch: memory fresh from the system costs a page fault per
   * page, which made these reads several times slower than the disk. A batch uses its originals
   * only until it has written them, and batches write one at a time.
   */
  private async readOriginals(list: Staged[]): Promise<void> {
    const { cs } = this;
    if (this.originals.length < list.length * cs)
      this.originals = Buffer.allocUnsafe(list.length * cs);
    let at = 0;
    for (const run of runs(list)) {
      const buf = this.originals.subarray(at, at + run.length * cs);
      at += buf.length;
      await this.base.read(buf, run[0]!.chunk * cs);
      run.forEach((s, i) => {
        s.original = buf.subarray(i * cs, (i + 1) * cs);
      });
    }
  }

  /** Reads the live volume: staged chunks from memory, the rest from the base image. */
  async readLive(offset: number, target: Uint8Array): Promise<void> {
    const { cs } = this;
    const first = Math.floor(offset / cs);
    const last = Math.floor((offset + target.length - 1) / cs);
    const reads: Promise<void>[] = [];
    let runStart = offset;
    const end = offset + target.length;
    const flushRun = (upTo: number) => {
      if (upTo > runStart)
        reads.push(
          this.base
            .read(target.subarray(runStart - offset, upTo - offset), runStart)
            .then(() => {}),
        );
    };
    for (let c = first; c <= last; c++) {
      const s = this.staged.get(c) ?? this.landed(c);
      if (!s) continue;
      const lo = Math.max(offset, c * cs);
      const hi = Math.min(end, (c + 1) * cs);
      flushRun(lo);
      runStart = hi;
      s.readers++;
      reads.push(
        s.ready.then(() => {
          target.set(s.data.subarray(lo - c * cs, hi - c * cs), lo - offset);
          s.readers--;
        }),
      );
    }
    flushRun(end);
    await Promise.all(reads);
  }

  /** True when no chunk of the live range is staged or landing: the base image holds it all. */
  inBase(offset: number, length: number): boolean {
    const { cs } = this;
    for (let c = Math.floor(offset / cs); c * cs < offset + length; c++)
      if (this.staged.has(c) || this.landed(c)) return false;
    return true;
  }

  /** The chunk's entry in the newest landing batch that holds it, if any. */
  private landed(chunk: number): Staged | undefined {
    for (let i = this.landing.length - 1; i >= 0; i--) {
      const s = this.landing[i]!.batch.get(chunk);
      if (s) return s;
    }
    return undefined;
  }
}

function original(s: Staged): Buffer {
  if (!s.original) throw new Error(`chunk ${s.chunk}: original not read before its batch`);
  return s.original;
}

/** Splits staged chunks, sorted by number, into runs of consecutive chunks. */
function runs(list: Staged[]): Staged[][] {
  const out: Staged[][] = [];
  for (const s of list) {
    const run = out.at(-1);
    if (run && run.at(-1)!.chunk === s.chunk - 1) run.push(s);
    else out.push([s]);
  }
  return out;
}
