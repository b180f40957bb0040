// Metadata blocks of the filesystem: a byte-bounded cache over the device and the running
// transaction that the journal commits. It never writes a metadata block home outside a commit.

import { LRUCache } from "lru-cache";
import { type BlockDevice, Mutex } from "../cow/index.js";
import { erofs, FsError } from "../errors.js";
import type { Journal } from "./journal.js";

/**
 * Ends one atomic part of a long operation and begins the next (see `MetaStore.run`); commits
 * first when fewer than `room` more blocks fit in the running transaction (see `MetaStore.room`).
 */
export type Step = (room?: number) => Promise<void>;

/**
 * ENOSPC that a commit and a checkpoint would cure: blocks freed since the last commit, or in
 * transactions the journal still holds, are not reused before them. `MetaStore.run` commits,
 * checkpoints and runs the operation again.
 */
export class CheckpointNeeded extends FsError {
  constructor(what: string) {
    super("ENOSPC", what);
    this.name = "CheckpointNeeded";
  }
}

/**
 * Blocks that a cold read on a read-only device brings in together: the aligned run of 64 KiB
 * around the block asked for (see `readCluster`).
 */
const CLUSTER_BLOCKS = 16;

/** Spare block buffers kept (see `MetaStore.spare`): more than one operation changes. */
const MAX_SPARE = 64;

export interface MetaStoreOptions {
  /** Bytes of clean blocks kept in memory (dirty blocks are held until committed). */
  cacheBytes?: number;
  /** Images in memory that the device holds, looked up before it is read (see `MetaStore.seed`). */
  seed?: Seed;
}

/**
 * The images in memory of a filesystem that a snapshot of its device holds (`MetaStore.seed`),
 * for a view of the snapshot to look up before it reads the snapshot.
 */
export interface Seed {
  /**
   * The image of `block` as the snapshot holds it, if the filesystem has it in memory; none once
   * dropped, or once the filesystem changed more blocks than its cache holds since the snapshot.
   */
  get(block: number): Buffer | undefined;
  /** Ends the record, and lets go of the filesystem's memory: `get` answers nothing from now on. */
  drop(): void;
}

/**
 * Operations run one at a time (`run`); each is atomic: all its block changes are committed
 * together, or, if it throws, none of them happened. Commits group every operation run since the
 * previous commit into one journal transaction.
 */
export class MetaStore {
  /**
   * The metadata lock: `run`, `view`, `commit` and `checkpoint` hold it, one at a time. It
   * guards the images below, and the allocator, inode table and journal built on this store.
   */
  private readonly lock = new Mutex();
  /**
   * Images as the device (with the journal) holds them. Guarded by `lock`; `peek` and `read`
   * may look outside it, when `idle` or for blocks no operation is changing.
   */
  private readonly clean: LRUCache<number, Buffer>;
  /** See `changes`. Guarded by `lock`. */
  private changed = 0;
  /** Images changed since the last commit. Guarded by `lock`. */
  private running = new Map<number, Buffer>();
  /**
   * Images as they were before the operation in progress first changed them (its undo log). Guarded
   * by `lock`.
   */
  private undo: Map<number, { image: Buffer | undefined; wasDirty: boolean }> | undefined;
  /** Calls holding or waiting for the lock. No lock: counted in synchronous steps. */
  private busy = 0;
  /**
   * File data reads in flight outside the lock (see `reading`). No lock: added and removed in
   * synchronous steps.
   */
  private readonly reads = new Set<Promise<unknown>>();
  /**
   * Cluster reads in flight, by first block: blocks of one cluster wait for the same read. No lock:
   * as `reads`.
   */
  private readonly clusters = new Map<number, Promise<Buffer>>();
  /**
   * Block buffers to copy into (and to zero for a block just allocated), taken back from the undo
   * logs of completed operations: an operation copies every dirty block it changes, and allocating
   * each copy afresh cost more than the change. Guarded by `lock`.
   */
  private readonly spare: Buffer[] = [];
  /**
   * One record per `seed` not dropped: the blocks changed since it began, with the image each
   * had then if it was in memory. No lock: a block is recorded in the same synchronous step as
   * its image leaves the cache, so a lookup at any time (a view's, outside this store's lock)
   * finds the image the snapshot holds.
   */
  private readonly records = new Set<Map<number, Buffer | undefined>>();
  private readonly rollbackListeners: Array<(blocks: number[]) => void> = [];
  private readonly commitListeners: Array<() => void> = [];

  /** See `MetaStoreOptions.seed`. */
  private readonly seeded: Seed | undefined;

  constructor(
    private readonly dev: BlockDevice,
    private readonly journal: Journal,
    opts: MetaStoreOptions = {},
  ) {
    this.clean = new LRUCache({
      maxSize: Math.max(opts.cacheBytes ?? 64 << 20, dev.blockSize),
      sizeCalculation: (b) => b.length,
    });
    this.seeded = opts.seed;
  }

  /**
   * The images in memory that a snapshot of the device taken now holds, for its view to look up
   * (`MetaStoreOptions.seed`): only when each cached image is what the device holds, that is
   * when nothing changed since the journal was last checkpointed and no operation is changing
   * blocks. Nothing is copied, now or later: from now on the store records the image each block
   * had before its first change, and a lookup answers from that record or, for a block never
   * changed since, from the cache. Images are never changed in place, so they are shared.
   */
  seed(): Seed | undefined {
    if (this.undo || this.running.size > 0 || !this.journal.empty) return undefined;
    const before = new Map<number, Buffer | undefined>();
    this.records.add(before);
    // Not `this`: a dropped seed keeps nothing of the store alive.
    let live: { records: Set<typeof before>; clean: LRUCache<number, Buffer> } | undefined = {
      records: this.records,
      clean: this.clean,
    };
    return {
      get: (block) => {
        if (live && !live.records.has(before)) live = undefined; // outgrew the cache
        if (!live) return undefined;
        return before.has(block) ? before.get(block) : live.clean.peek(block);
      },
      drop: () => {
        live?.records.delete(before);
        live = undefined;
        before.clear();
      },
    };
  }

  /**
   * Block `block`, which `image` held (if it was in memory), is about to change: each record
   * of `seed` keeps that image unless it has one. A record that would outgrow the cache is
   * dropped.
   */
  private changing(block: number, image: Buffer | undefined): void {
    for (const before of this.records) {
      if (before.has(block)) continue;
      if (before.size * this.dev.blockSize >= this.clean.maxSize) this.records.delete(before);
      else before.set(block, image);
    }
  }

  /** Counts the blocks operations set out to change; unchanged while nothing changes. */
  get changes(): number {
    return this.changed;
  }

  get readOnly(): boolean {
    return this.dev.readOnly;
  }

  /** Blocks changed and not yet committed. */
  get dirtyBlocks(): number {
    return this.running.size;
  }

  /**
   * Blocks the running transaction may still take before it outgrows the journal (an operation
   * that goes past that fails with EFBIG). Every operation starts with at least half the
   * journal's capacity of room.
   */
  get room(): number {
    return this.journal.capacity - this.running.size;
  }

  /** True when a replay at the next open would rewrite `block` (see `Journal.holds`). */
  logged(block: number): boolean {
    return this.journal.holds(block);
  }

  /**
   * Blocks read from the journal's replay rather than from the device (a read-only open of a
   * device whose journal holds transactions): where such a view differs from the device.
   */
  replayedBlocks(): number[] {
    return [...this.journal.overlay.keys()];
  }

  /** Calls `fn` after each checkpoint of the journal (the log is then empty). */
  onCheckpoint(fn: () => void): void {
    this.journal.onCheckpoint(fn);
  }

  /** The current image of a block. The caller must not change it: use `write`. */
  async read(block: number): Promise<Buffer> {
    const known =
      this.running.get(block) ?? this.clean.get(block) ?? this.journal.overlay.get(block);
    if (known) return known;
    const seeded = this.fromSeed(block);
    if (seeded) return seeded;
    if (this.dev.readOnly) return this.readCluster(block);
    const b = Buffer.alloc(this.dev.blockSize);
    await this.dev.read(block * this.dev.blockSize, b);
    // A block changed while this read was in flight keeps its newer image.
    const now = this.running.get(block) ?? this.clean.get(block);
    if (now) return now;
    this.clean.set(block, b);
    return b;
  }

  /**
   * A read-only device (a snapshot) never changes under the cache, so a cold read takes the
   * blocks around the one asked for as well, as ext4 reads ahead its inode tables: a walk of a
   * snapshot's inodes and directories then costs one device read per cluster, not per block.
   * Blocks the journal's overlay holds keep their replayed image.
   */
  private async readCluster(block: number): Promise<Buffer> {
    const bs = this.dev.blockSize;
    const first = block - (block % CLUSTER_BLOCKS);
    let read = this.clusters.get(first);
    if (!read) {
      const count = Math.min(CLUSTER_BLOCKS, Math.floor(this.dev.size / bs) - first);
      const buf = Buffer.alloc(count * bs);
      read = this.dev.read(first * bs, buf).then(() => buf);
      this.clusters.set(first, read);
      read.then(
        () => this.clusters.delete(first),
        () => this.clusters.delete(first),
      );
    }
    const buf = await read;
    for (let i = 0; i * bs < buf.length; i++) {
      const b = first + i;
      if (!this.clean.has(b) && !this.journal.overlay.has(b))
        this.clean.set(b, Buffer.from(buf.subarray(i * bs, (i + 1) * bs)));
    }
    return (
      this.journal.overlay.get(block) ??
      this.clean.get(block) ??
      Buffer.from(buf.subarray((block - first) * bs, (block - first + 1) * bs))
    );
  }

  /** Calls `fn` with the blocks a failed operation put back (all then in memory: see `peek`). */
  onRollback(fn: (blocks: number[]) => void): void {
    this.rollbackListeners.push(fn);
  }

  /** Calls `fn` after each commit, once the transaction is durable. */
  onCommit(fn: () => void): void {
    this.commitListeners.push(fn);
  }

  /**
   * The image of a block if it is in memory (running, cached, replayed or in the seed), without
   * reading.
   */
  peek(block: number): Buffer | undefined {
    return (
      this.running.get(block) ??
      this.clean.get(block) ??
      this.journal.overlay.get(block) ??
      this.fromSeed(block)
    );
  }

  /** The seed's image of a block, then kept in the cache as if read. */
  private fromSeed(block: number): Buffer | undefined {
    const image = this.seeded?.get(block);
    if (image) this.clean.set(block, image);
    return image;
  }

  /** The image of a block to change in place, inside `run`; it joins the running transaction. */
  async write(block: number): Promise<Buffer> {
    if (this.dev.readOnly) throw erofs("filesystem");
    const undo = this.undo;
    if (!undo) throw new Error("MetaStore.write outside an operation");
    this.changed++;
    const dirty = this.running.get(block);
    if (dirty) {
      if (!undo.has(block)) undo.set(block, { image: this.copy(dirty), wasDirty: true });
      return dirty;
    }
    const before = await this.read(block);
    if (this.records.size > 0) this.changing(block, before);
    const image = this.copy(before);
    if (!undo.has(block)) undo.set(block, { image: before, wasDirty: false });
    this.running.set(block, image);
    this.clean.delete(block);
    return image;
  }

  /** A zeroed image for a block just allocated, inside `run`: its old contents are not read. */
  create(block: number): Buffer {
    if (this.dev.readOnly) throw erofs("filesystem");
    const undo = this.undo;
    if (!undo) throw new Error("MetaStore.create outside an operation");
    this.changed++;
    const dirty = this.running.get(block);
    // What a block just allocated held is no metadata of a snapshot taken before.
    if (!dirty && this.records.size > 0) this.changing(block, undefined);
    if (!undo.has(block)) undo.set(block, { image: dirty && this.copy(dirty), wasDirty: !!dirty });
    const image = this.spare.pop()?.fill(0) ?? Buffer.alloc(this.dev.blockSize);
    this.running.set(block, image);
    this.clean.delete(block);
    return image;
  }

  /**
   * Runs one operation. Before it starts, the running transaction is committed if it has used
   * half the journal, so that every operation has that much room. If the operation throws, its
   * changes are undone.
   *
   * A long operation (freeing a huge file) calls `step` between parts: the part done so far
   * becomes a completed operation (committed with the others, never undone), and the next part
   * begins with room of its own. Nothing else runs between the parts, so each part must leave
   * the filesystem consistent on its own. A throw undoes the current part only.
   *
   * An operation that fails with `CheckpointNeeded` before its first step is undone, the journal
   * is checkpointed and the operation runs once more.
   */
  run<T>(fn: (step: Step) => Promise<T>): Promise<T> {
    return this.locked(async () => {
      if (this.running.size > this.journal.capacity / 2) await this.commitLocked();
      for (let attempt = 0; ; attempt++) {
        let steps = 0;
        const step: Step = async (room = 1) => {
          this.checkSize();
          steps++;
          this.recycle();
          this.undo = new Map();
          if (this.room < room) await this.commitLocked();
        };
        this.undo = new Map();
        try {
          const result = await fn(step);
          this.checkSize();
          this.recycle();
          return result;
        } catch (e) {
          this.rollback();
          if (!(e instanceof CheckpointNeeded) || attempt > 0 || steps > 0) throw e;
          this.undo = undefined;
          await this.commitLocked();
          await this.journal.checkpoint();
        } finally {
          this.undo = undefined;
        }
      }
    });
  }

  /** A copy of a block image, in a spare buffer when there is one. */
  private copy(image: Buffer): Buffer {
    const b = this.spare.pop() ?? Buffer.allocUnsafe(image.length);
    b.set(image);
    return b;
  }

  /** The undo log's copies of dirty blocks, once its operation completed, become spares. */
  private recycle(): void {
    for (const { image, wasDirty } of this.undo!.values())
      if (wasDirty && image && this.spare.length < MAX_SPARE) this.spare.push(image);
  }

  private checkSize(): void {
    if (this.running.size > this.journal.capacity) {
      throw new FsError(
        "EFBIG",
        `one operation changed ${this.running.size} metadata blocks, more than the journal holds`,
      );
    }
  }

  /** Runs a read-only operation: it sees no operation half-done, and changes nothing. */
  view<T>(fn: () => Promise<T>): Promise<T> {
    return this.locked(fn);
  }

  /**
   * True when no operation is between its start and its end: every image in memory (and what
   * is decoded from them) is then as completed operations left it, and a synchronous look at
   * them needs no lock. Views and commits change no image.
   */
  get settled(): boolean {
    return this.undo === undefined;
  }

  /**
   * True when no operation, view or commit is running or waiting: every image in memory is then
   * that of completed operations, and stays so until the caller next waits.
   */
  get idle(): boolean {
    return this.busy === 0;
  }

  /**
   * Tracks a read of file data whose blocks were found (in a view, or while `idle`) and that
   * goes on outside the lock. A commit waits for the reads in flight before the blocks its
   * operations freed may be handed out again, so such a read never sees another file's data.
   */
  reading<T>(read: Promise<T>): Promise<T> {
    const done = read.then(
      () => {},
      () => {},
    );
    this.reads.add(done);
    void done.then(() => this.reads.delete(done));
    return read;
  }

  private locked<T>(fn: () => Promise<T>): Promise<T> {
    this.busy++;
    return this.lock.run(fn).finally(() => {
      this.busy--;
    });
  }

  private rollback(): void {
    const undo = this.undo!;
    for (const [block, { image, wasDirty }] of undo) {
      if (wasDirty && image) this.running.set(block, image);
      else {
        this.running.delete(block);
        if (image) this.clean.set(block, image);
      }
    }
    for (const listen of this.rollbackListeners) listen([...undo.keys()]);
  }

  /** Commits every completed operation: durable when this resolves. */
  commit(): Promise<void> {
    return this.locked(() => this.commitLocked());
  }

  /** Commits, then writes everything home and empties the journal: the device needs no replay. */
  checkpoint(): Promise<void> {
    return this.locked(async () => {
      await this.commitLocked();
      await this.journal.checkpoint();
    });
  }

  private async commitLocked(): Promise<void> {
    if (this.running.size === 0) return;
    const tx = this.running;
    await this.journal.commit(tx);
    this.running = new Map();
    for (const [block, image] of tx) this.clean.set(block, image);
    // The blocks freed by these operations become free for others: reads that found them first end.
    await Promise.all(this.reads);
    for (const listen of this.commitListeners) listen();
  }
}
