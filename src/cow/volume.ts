// The copy-on-write volume: the live BlockDevice over a base image plus an ordered chain of
// snapshots with their diff areas. It decides when to copy; it never changes what a snapshot reads.

import { randomUUID } from "node:crypto";
import { join } from "node:path";
import pino from "pino";
import { CorruptStoreError, einval, eio, enoent, enospc, erofs, FsError } from "../errors.js";
import { type BlockDevice, checkRange, type HostRange } from "./block-device.js";
import { basePath, catalogPath, readCatalog, writeCatalog } from "./catalog.js";
import { checkOpenStore, type StoreReport } from "./check.js";
import { DiffArea, dataPath, indexPath } from "./diff-area.js";
import {
  type Catalog,
  type Eviction,
  RECORD_SIZE,
  type SnapshotEntry,
  validChunkSize,
} from "./format.js";
import { Gate, Mutex } from "./gate.js";
import type { HostFile, HostFs } from "./host.js";
import { SnapshotDevice } from "./snapshot-device.js";
import { WriteBack } from "./write-back.js";

export type OnFull = "delete-oldest" | "fail-writes";
/** Where the volume reports recoveries, evictions and failures (pino's signature). */
export interface Logger {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

export interface CreateOptions {
  volumeSize: number;
  /** Bytes per copy-on-write chunk: a power of two from 4 KiB to 1 MiB. */
  chunkSize?: number;
  /** Maximum bytes of all diff areas; 0 = no limit. */
  shadowStorageLimit?: number;
  onFull?: OnFull;
}

export interface OpenOptions {
  readOnly?: boolean;
  logger?: Logger;
  /** Bytes of copy-on-write chunks staged in memory before a write-back batch starts. */
  writeBackBytes?: number;
}

export interface SnapshotInfo {
  id: number;
  name: string | undefined;
  /** The snapshot set it belongs to, if it was taken as part of one. */
  setId: string | undefined;
  createdAt: number;
  /** Bytes of this snapshot's diff area (preserved chunks and index). */
  diffAreaBytes: number;
}

/** What opening the store had to do to make it consistent. */
export interface Recovery {
  /** The previous process did not close the store (crash, kill -9, power loss). */
  uncleanShutdown: boolean;
  /** Index records of interrupted batches or merges that were dropped. */
  droppedRecords: number;
  /** Diff-area files no snapshot owned (an interrupted create or delete), removed. */
  removedFiles: string[];
  /** A revert that was interrupted and has been completed. */
  resumedRevert: number | undefined;
  /** A revert that was interrupted and, the store being opened read-only, is not completed yet. */
  unfinishedRevert: number | undefined;
}

export interface Link {
  entry: SnapshotEntry;
  area: DiffArea;
}

export const DEFAULT_CHUNK_SIZE = 64 * 1024;
/**
 * Bytes staged before a write-back batch starts. First copy-on-write writes (bench:cow, 1 GiB)
 * ran at 0.26 of a raw file's speed with 4 or 8 MiB, 0.25-0.32 with 16, 0.24-0.25 with 32,
 * 0.19-0.21 with 64 and 0.16 with 128: the largest of the fastest, for the fewest syncs.
 */
const DEFAULT_WRITE_BACK = 16 * 1024 * 1024;

const defaultLogger = (): Logger =>
  pino({ name: "shadowfs", level: process.env.SHADOWFS_LOG_LEVEL ?? "warn" }, pino.destination(2));

export class CowVolume implements BlockDevice {
  readonly blockSize = 4096;
  readonly size: number;
  readonly chunkSize: number;
  /** Oldest first. */
  readonly chain: Link[] = [];
  private readonly gate = new Gate();
  private readonly catalogLock = new Mutex();
  private readonly writeBack: WriteBack;
  private failure: Error | undefined;
  private closed = false;
  /** While a revert runs: snapshots from this id on may not be evicted. */
  private protectedFrom = Number.POSITIVE_INFINITY;
  recovery: Recovery = {
    uncleanShutdown: false,
    droppedRecords: 0,
    removedFiles: [],
    resumedRevert: undefined,
    unfinishedRevert: undefined,
  };

  private constructor(
    private readonly host: HostFs,
    readonly dir: string,
    private readonly cat: Catalog,
    readonly base: HostFile,
    readonly readOnly: boolean,
    private readonly log: Logger,
    writeBackBytes: number,
  ) {
    this.size = cat.volumeSize;
    this.chunkSize = cat.chunkSize;
    this.writeBack = new WriteBack(this, writeBackBytes);
  }

  /** Makes a new, empty store in `dir` (created if missing; must not hold a store). */
  static async create(
    host: HostFs,
    dir: string,
    opts: CreateOptions & OpenOptions,
  ): Promise<CowVolume> {
    const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
    if (!validChunkSize(chunkSize)) {
      throw einval(`chunk size ${chunkSize}: must be a power of two from 4 KiB to 1 MiB`);
    }
    if (
      !Number.isSafeInteger(opts.volumeSize) ||
      opts.volumeSize <= 0 ||
      opts.volumeSize % chunkSize !== 0
    ) {
      throw einval(
        `volume size ${opts.volumeSize}: must be a positive multiple of the chunk size (${chunkSize})`,
      );
    }
    const limit = opts.shadowStorageLimit ?? 0;
    if (!Number.isSafeInteger(limit) || limit < 0)
      throw einval(`shadow storage limit ${limit}: must be >= 0`);
    await host.mkdir(join(dir, "diff"));
    const exists = await host.exists(join(dir, "catalog"));
    if (exists) throw new FsError("EEXIST", `${dir} already holds a shadowfs store`);
    const base = await host.open(basePath(dir), { create: true });
    await base.truncate(opts.volumeSize);
    await base.sync();
    await base.close();
    const now = Date.now();
    const cat: Catalog = {
      uuid: randomUUID(),
      volumeSize: opts.volumeSize,
      chunkSize,
      shadowStorageLimit: limit,
      onFull: opts.onFull ?? "delete-oldest",
      createdAt: now,
      generation: 0,
      nextId: 1,
      clean: true,
      snapshots: [],
      evictions: [],
    };
    await writeCatalog(host, dir, cat);
    return CowVolume.open(host, dir, opts);
  }

  /** Opens a store, recovering from an unclean shutdown; refuses a damaged one with CorruptStoreError. */
  static async open(host: HostFs, dir: string, opts: OpenOptions = {}): Promise<CowVolume> {
    const readOnly = opts.readOnly ?? false;
    const cat = await readCatalog(host, dir);
    if (!(await host.exists(basePath(dir)))) throw new CorruptStoreError("base.img", "missing");
    const base = await host.open(basePath(dir), { readOnly });
    const baseSize = await base.size();
    const vol = new CowVolume(
      host,
      dir,
      cat,
      base,
      readOnly,
      opts.logger ?? defaultLogger(),
      opts.writeBackBytes ?? DEFAULT_WRITE_BACK,
    );
    try {
      if (baseSize < cat.volumeSize) {
        throw new CorruptStoreError(
          "base.img",
          `${baseSize} bytes, the volume has ${cat.volumeSize}`,
        );
      }
      await vol.load();
    } catch (e) {
      await vol.closeFiles();
      throw e;
    }
    return vol;
  }

  private async load(): Promise<void> {
    const { cat } = this;
    const rec = this.recovery;
    rec.uncleanShutdown = !cat.clean;
    const chunkCount = cat.volumeSize / cat.chunkSize;
    for (const [i, entry] of cat.snapshots.entries()) {
      const newest = i === cat.snapshots.length - 1;
      const { area, dropped } = await DiffArea.load(this.host, this.dir, entry.id, {
        chunkSize: cat.chunkSize,
        chunkCount,
        committed: entry.records,
        exact: !newest || cat.clean,
        readOnly: this.readOnly,
      });
      rec.droppedRecords += dropped;
      this.chain.push({ entry, area });
    }
    if (this.readOnly) {
      rec.unfinishedRevert = cat.revert?.to;
      return;
    }
    const owned = new Set(cat.snapshots.flatMap((s) => [`${s.id}.data`, `${s.id}.index`]));
    for (const name of await this.host.readdir(join(this.dir, "diff"))) {
      if (!owned.has(name)) {
        await this.host.unlink(join(this.dir, "diff", name));
        rec.removedFiles.push(`diff/${name}`);
      }
    }
    if (rec.removedFiles.length > 0) await this.host.syncDir(join(this.dir, "diff"));
    if (await this.host.exists(`${catalogPath(this.dir)}.tmp`)) {
      await this.host.unlink(`${catalogPath(this.dir)}.tmp`);
      rec.removedFiles.push("catalog.tmp");
    }
    if (rec.uncleanShutdown || rec.droppedRecords > 0 || rec.removedFiles.length > 0) {
      this.log.warn({ store: this.dir, ...rec }, "store recovered after an unclean shutdown");
    }
    cat.clean = false;
    await this.saveCatalog();
    if (cat.revert) {
      const { to, discardNewer } = cat.revert;
      this.log.warn({ store: this.dir, snapshot: to }, "completing an interrupted revert");
      await this.planRevert(to);
      await this.revertLocked(to, discardNewer);
      rec.resumedRevert = to;
    }
  }

  // ------------------------------------------------------------------ the live device

  async read(offset: number, target: Uint8Array): Promise<void> {
    checkRange(this.size, offset, target.length);
    return this.gate.withShared(async () => {
      this.check();
      await this.writeBack.readLive(offset, target);
    });
  }

  lend(offset: number, length: number, until: Promise<void>): HostRange | undefined {
    checkRange(this.size, offset, length);
    const fd = this.lendable();
    if (fd === undefined || !this.writeBack.inBase(offset, length) || !this.gate.tryShared(until))
      return undefined;
    return { fd, position: offset };
  }

  /** The descriptor of the base image that ranges are lent from, while the volume serves. */
  private lendable(): number | undefined {
    return this.closed || this.failure ? undefined : this.base.fd;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (this.readOnly) throw erofs("volume");
    checkRange(this.size, offset, data.length);
    return this.gate.withShared(async () => {
      this.check();
      await this.guard(() => this.writeBack.write(offset, data));
    });
  }

  flush(): Promise<void> {
    if (this.readOnly) return Promise.resolve();
    return this.gate.withShared(async () => {
      this.check();
      await this.guard(() => this.flushLocked());
    });
  }

  private async flushLocked(): Promise<void> {
    await this.writeBack.commit();
    await this.base.sync();
  }

  /** Flushes, records a clean shutdown and closes every file. */
  async close(): Promise<void> {
    await this.gate.withExclusive(async () => {
      if (this.closed) return;
      this.closed = true;
      try {
        if (!this.readOnly && !this.failure) {
          await this.flushLocked();
          this.cat.clean = true;
          await this.saveCatalog();
        }
      } finally {
        await this.closeFiles();
      }
    });
  }

  private async closeFiles(): Promise<void> {
    await Promise.allSettled([this.base.close(), ...this.chain.map((l) => l.area.close())]);
  }

  // ------------------------------------------------------------------ snapshots

  snapshots(): SnapshotInfo[] {
    return this.chain.map(({ entry, area }) => ({
      id: entry.id,
      name: entry.name,
      setId: entry.setId,
      createdAt: entry.createdAt,
      diffAreaBytes: area.bytesUsed,
    }));
  }

  evictions(): Eviction[] {
    return this.cat.evictions.map((e) => ({ ...e }));
  }

  get settings(): { shadowStorageLimit: number; onFull: OnFull; uuid: string } {
    return {
      shadowStorageLimit: this.cat.shadowStorageLimit,
      onFull: this.cat.onFull,
      uuid: this.cat.uuid,
    };
  }

  /** Bytes all diff areas occupy. */
  storageUsed(): number {
    return this.chain.reduce((sum, l) => sum + l.area.bytesUsed, 0);
  }

  /**
   * Takes a snapshot: flushes, then adds an empty diff area and commits the catalog. Copies no
   * data, so its cost does not depend on the volume's size.
   */
  createSnapshot(
    opts: { name?: string; setId?: string; createdAt?: number } = {},
  ): Promise<SnapshotInfo> {
    if (this.readOnly) return Promise.reject(erofs("volume"));
    return this.admin(async () => {
      await this.flushLocked();
      const id = this.cat.nextId;
      const area = await DiffArea.create(this.host, this.dir, id, this.chunkSize);
      const entry: SnapshotEntry = { id, createdAt: opts.createdAt ?? Date.now(), records: 0 };
      if (opts.name !== undefined) entry.name = opts.name;
      if (opts.setId !== undefined) entry.setId = opts.setId;
      this.cat.nextId++;
      this.chain.push({ entry, area });
      try {
        await this.saveCatalog();
      } catch (e) {
        this.chain.pop();
        await area.close();
        throw e;
      }
      return this.snapshots().at(-1)!;
    });
  }

  /** A read-only BlockDevice showing the volume as it was when snapshot `id` was taken. */
  snapshotDevice(id: number): BlockDevice {
    this.position(id);
    return new SnapshotDevice(this, id);
  }

  /**
   * Checks the store's files while the volume is open and written (`checkOpenStore`): each diff
   * area is checked while the snapshot chain waits, writes do not. With a snapshot taken just
   * before, every area checked is one that writes no longer change.
   */
  checkFiles(onProgress?: (done: number, total: number) => void): Promise<StoreReport> {
    return checkOpenStore(this.host, this.dir, (fn) => this.gate.withShared(fn), onProgress);
  }

  /** Reads snapshot `id`; used by SnapshotDevice. */
  async readSnapshot(id: number, offset: number, target: Uint8Array): Promise<void> {
    checkRange(this.size, offset, target.length);
    return this.gate.withShared(async () => {
      this.check();
      await this.writeBack.readSnapshot(this.position(id), offset, target);
    });
  }

  /** `lend` of snapshot `id`; used by SnapshotDevice. */
  lendSnapshot(
    id: number,
    offset: number,
    length: number,
    until: Promise<void>,
  ): HostRange | undefined {
    checkRange(this.size, offset, length);
    const fd = this.lendable();
    const pos = this.chain.findIndex((l) => l.entry.id === id);
    if (fd === undefined || pos < 0) return undefined;
    if (!this.writeBack.snapshotInBase(pos, offset, length) || !this.gate.tryShared(until))
      return undefined;
    this.writeBack.holdBase(until);
    return { fd, position: offset };
  }

  /**
   * Deletes a snapshot. The oldest just drops its diff area; any other first merges into its
   * older neighbour the preserved chunks that neighbour reads through it.
   */
  deleteSnapshot(id: number): Promise<void> {
    if (this.readOnly) return Promise.reject(erofs("volume"));
    return this.admin(async () => {
      await this.flushLocked();
      const pos = this.position(id);
      const victim = this.chain[pos]!;
      const older = this.chain[pos - 1];
      if (older) await this.merge(victim.area, older.area);
      this.chain.splice(pos, 1);
      await this.saveCatalog();
      await this.dropArea(victim.area);
    });
  }

  /**
   * Makes the live volume read what snapshot `id` reads. The snapshot and older ones stay. Newer
   * snapshots are kept by default (the newest then holds the volume as it was before the revert,
   * so a revert can itself be undone); `discardNewer` deletes them, as `zfs rollback -r` does.
   * Crash-safe: an interrupted revert is completed by the next open.
   */
  revert(id: number, opts: { discardNewer?: boolean } = {}): Promise<void> {
    if (this.readOnly) return Promise.reject(erofs("volume"));
    return this.admin(async () => {
      await this.flushLocked();
      await this.planRevert(id);
      this.cat.revert = { to: id, discardNewer: opts.discardNewer ?? false };
      await this.saveCatalog();
      await this.revertLocked(id, opts.discardNewer ?? false);
    });
  }

  /** Makes room up front for what a revert to `id` preserves, so it does not stop half-way. */
  private async planRevert(id: number): Promise<void> {
    const active = this.chain.at(-1)!.area;
    const copies = this.changedSince(this.position(id)).filter(
      (c) => !active.entries.has(c),
    ).length;
    // Each copy may come in a batch of its own: a chunk, its entry and a batch header.
    await this.protecting(id, () =>
      this.makeRoom(copies * (this.chunkSize + 2 * RECORD_SIZE), `revert to snapshot ${id}`),
    );
  }

  private async revertLocked(id: number, discardNewer: boolean): Promise<void> {
    const buf = Buffer.alloc(this.chunkSize);
    await this.protecting(id, async () => {
      for (const c of this.changedSince(this.position(id))) {
        await this.writeBack.readSnapshot(this.position(id), c * this.chunkSize, buf);
        await this.writeBack.write(c * this.chunkSize, buf);
      }
      await this.flushLocked();
    });
    // The live volume now equals the snapshot, so the newer diff areas hold nothing that
    // it or an older snapshot reads through them: they go without a merge.
    const dropped = discardNewer ? this.chain.splice(this.position(id) + 1) : [];
    this.cat.revert = undefined;
    await this.saveCatalog();
    for (const l of dropped) await this.dropArea(l.area);
  }

  /** Chunks whose live contents may differ from those of the snapshot at `pos`. */
  private changedSince(pos: number): number[] {
    const set = new Set<number>();
    for (const l of this.chain.slice(pos)) for (const c of l.area.entries.keys()) set.add(c);
    return [...set].sort((a, b) => a - b);
  }

  private async merge(from: DiffArea, into: DiffArea): Promise<void> {
    const todo = [...from.entries.keys()].filter((c) => !into.entries.has(c)).sort((a, b) => a - b);
    const perBatch = Math.max(1, Math.floor((8 << 20) / this.chunkSize));
    for (let i = 0; i < todo.length; i += perBatch) {
      const chunks = await Promise.all(
        todo.slice(i, i + perBatch).map(async (chunk) => {
          const data = Buffer.alloc(this.chunkSize);
          await from.readChunk(chunk, data);
          return { chunk, data };
        }),
      );
      await into.append(chunks);
    }
  }

  // ------------------------------------------------------------------ shadow storage

  /**
   * Makes room for `bytes` more of diff area under the shadow storage limit: deletes the oldest
   * snapshots (never one a running revert needs) or, with onFull = fail-writes, throws ENOSPC.
   * Returns false when no snapshot is left, so nothing needs preserving.
   */
  async makeRoom(bytes: number, what: string): Promise<boolean> {
    const limit = this.cat.shadowStorageLimit;
    for (;;) {
      const oldest = this.chain[0];
      if (!oldest) return false;
      if (limit === 0) return true;
      const used = this.storageUsed() + this.writeBack.reservedBytes;
      if (used + bytes <= limit) return true;
      if (this.cat.onFull === "fail-writes" || oldest.entry.id >= this.protectedFrom) {
        throw enospc(
          `${what}: shadow storage limit reached (${used} of ${limit} bytes used); delete snapshots or raise the limit`,
        );
      }
      await this.evictOldest(
        `shadow storage limit of ${limit} bytes reached (${used} used, ${bytes} more needed)`,
      );
    }
  }

  /** Runs `fn` with snapshot `id` and newer ones safe from eviction. */
  private async protecting<T>(id: number, fn: () => Promise<T>): Promise<T> {
    this.protectedFrom = id;
    try {
      return await fn();
    } finally {
      this.protectedFrom = Number.POSITIVE_INFINITY;
    }
  }

  private async evictOldest(reason: string): Promise<void> {
    const victim = this.chain.shift()!;
    const { entry } = victim;
    const eviction: Eviction = {
      id: entry.id,
      createdAt: entry.createdAt,
      evictedAt: Date.now(),
      reason,
    };
    if (entry.name !== undefined) eviction.name = entry.name;
    this.cat.evictions.push(eviction);
    this.log.warn(
      { store: this.dir, snapshot: entry.id, name: entry.name, reason },
      "snapshot deleted to make room",
    );
    await this.saveCatalog();
    await this.dropArea(victim.area);
  }

  // ------------------------------------------------------------------ helpers

  /** Index in the chain of snapshot `id`, or ENOENT. */
  position(id: number): number {
    const pos = this.chain.findIndex((l) => l.entry.id === id);
    if (pos < 0) throw enoent(`snapshot ${id} does not exist`);
    return pos;
  }

  private async dropArea(area: DiffArea): Promise<void> {
    await area.close();
    await this.host.unlink(dataPath(this.dir, area.id));
    await this.host.unlink(indexPath(this.dir, area.id));
    await this.host.syncDir(join(this.dir, "diff"));
  }

  /** Writes the catalog with the snapshot list and each area's durable record count. */
  private saveCatalog(): Promise<void> {
    return this.catalogLock.run(async () => {
      this.cat.snapshots = this.chain.map(({ entry, area }) => ({
        ...entry,
        records: area.records,
      }));
      await writeCatalog(this.host, this.dir, this.cat);
    });
  }

  private admin<T>(fn: () => Promise<T>): Promise<T> {
    return this.gate.withExclusive(async () => {
      this.check();
      return this.guard(fn);
    });
  }

  /** Runs `fn`; an I/O failure leaves the volume failed: it must be reopened (recovery). */
  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (!(e instanceof FsError) || e.code === "EIO") {
        this.failure = e as Error;
        this.log.error(
          { store: this.dir, err: e },
          "I/O error: the volume stops; reopen it to recover",
        );
      }
      throw e;
    }
  }

  /** Stops the volume after a failure found in the background (a write-back batch). */
  stop(e: Error): void {
    this.failure ??= e;
    this.log.error(
      { store: this.dir, err: e },
      "I/O error: the volume stops; reopen it to recover",
    );
  }

  private check(): void {
    if (this.closed) throw eio("volume is closed");
    if (this.failure)
      throw eio(`volume stopped after an I/O error (${this.failure.message}); reopen it`);
  }
}
