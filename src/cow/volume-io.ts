// The volume's I/O: live reads and writes, snapshot reads, lent ranges and flushes, each admitted
// by the gate, and the stop after an I/O failure. It never changes the chain or the catalog.

import { eio, enoent, erofs, FsError } from "../errors.js";
import { type BlockDevice, checkRange, type HostRange } from "./block-device.js";
import type { ChunkStore } from "./chunk-store.js";
import { Gate, type Lease, ReadHolds } from "./gate.js";
import type { HostFile } from "./host.js";
import { SnapshotDevice, type ViewSource } from "./snapshot-device.js";
import { SnapshotRead } from "./snapshot-read.js";
import type { Logger } from "./volume-options.js";
import { WriteBack } from "./write-back.js";

/** What the I/O side of a volume works on; the volume's open provides it. */
export interface VolumeIoParts {
  dir: string;
  size: number;
  store: ChunkStore;
  base: HostFile;
  /**
   * Opens the base image again, read-only, around the host's page cache where the host allows:
   * for reads that take each byte once (a stream), which caching would only crowd memory with.
   */
  openBaseDirect: () => Promise<HostFile>;
  readOnly: boolean;
  log: Logger;
  writeBackBytes: number;
}

/** Reads of one snapshot, through files of their own (`VolumeIo.streamReads`). */
export interface SnapshotReads {
  read(offset: number, target: Uint8Array): Promise<void>;
  /** Closes their files; no read may be under way. */
  close(): Promise<void>;
}

/**
 * Locking: every entry point enters `gate`, reads, writes and flushes shared, administration
 * (snapshot create, delete, revert; close) exclusive, after a flush. Shared work changes shared
 * state only in synchronous steps and leaves it consistent at every await; the one change of the
 * chain under the gate shared is an eviction, asked for by a write (see ShadowStorage).
 */
export abstract class VolumeIo implements BlockDevice {
  readonly blockSize = 4096;
  readonly size: number;
  readonly chunkSize: number;
  readonly dir: string;
  readonly readOnly: boolean;
  protected readonly gate = new Gate();
  /** The chain of diff areas. Guarded by the volume gate (exclusive for administration, shared for I/O). */
  protected readonly store: ChunkStore;
  /** Guarded by the volume gate (exclusive for administration, shared for I/O); never closed here. */
  protected readonly base: HostFile;
  /** Guarded by the volume gate (exclusive for administration, shared for I/O). */
  protected readonly writeBack: WriteBack;
  protected readonly snapshotRead: SnapshotRead;
  private readonly openBaseDirect: () => Promise<HostFile>;
  /** Snapshot reads of the base image, which write-back batches wait for; added to under the gate shared. */
  protected readonly baseReads = new ReadHolds();
  /** What snapshot views read through: this volume, under its gate. */
  private readonly views: ViewSource;
  protected readonly log: Logger;
  /** Set by the first I/O failure, under the gate either way; never cleared. */
  protected failure: Error | undefined;
  /** Guarded by the volume gate held exclusive (set by `close`). */
  protected closed = false;

  protected constructor(p: VolumeIoParts) {
    this.size = p.size;
    this.chunkSize = p.store.chunkSize;
    this.dir = p.dir;
    this.readOnly = p.readOnly;
    this.store = p.store;
    this.base = p.base;
    this.openBaseDirect = p.openBaseDirect;
    this.log = p.log;
    const { baseReads } = this;
    this.writeBack = new WriteBack({
      store: p.store,
      base: p.base,
      baseReads,
      batchBytes: p.writeBackBytes,
      makeRoom: (bytes, what) => this.makeRoom(bytes, what),
      stop: (e) => this.stop(e),
    });
    this.snapshotRead = new SnapshotRead(p.store, p.base, baseReads);
    this.views = {
      size: this.size,
      blockSize: this.blockSize,
      read: (id, offset, target) => this.readSnapshot(id, offset, target),
      lend: (id, offset, length, lease) => this.lendSnapshot(id, offset, length, lease),
      check: (id) => void this.position(id),
    };
  }

  /** The space policy the write-back asks before it preserves `bytes` more (see WriteBack). */
  protected abstract makeRoom(bytes: number, what: string): Promise<boolean>;

  // ------------------------------------------------------------------ the live device

  async read(offset: number, target: Uint8Array): Promise<void> {
    checkRange(this.size, offset, target.length);
    return this.gate.withShared(async () => {
      this.check();
      await this.writeBack.readLive(offset, target);
    });
  }

  lend(offset: number, length: number, lease: Lease): HostRange | undefined {
    checkRange(this.size, offset, length);
    const fd = this.lendable();
    if (fd === undefined || !this.writeBack.inBase(offset, length) || !this.gate.tryShared(lease))
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

  /** Lands every staged chunk and syncs the base image; the caller holds the gate. */
  protected async flushLocked(): Promise<void> {
    await this.writeBack.commit();
    await this.base.sync();
  }

  abstract close(): Promise<void>;

  // ------------------------------------------------------------------ snapshot reads

  /** A read-only BlockDevice showing the volume as it was when snapshot `id` was taken. */
  snapshotDevice(id: number): BlockDevice {
    this.position(id);
    return new SnapshotDevice(this.views, id);
  }

  /** Reads snapshot `id`; used by SnapshotDevice. */
  readSnapshot(id: number, offset: number, target: Uint8Array): Promise<void> {
    return this.readSnapshotVia(this.snapshotRead, id, offset, target);
  }

  /**
   * Reads of snapshot `id` that take each range once (a stream): as `readSnapshot`, but the base
   * image is read through a handle of its own, around the host's page cache where the host allows
   * (straight into memory from `alignedBuffer`; see DirectIo). Read into the cache, a cold base
   * made the stream's own writes wait for memory. `close` it once its reads have settled.
   */
  async streamReads(id: number): Promise<SnapshotReads> {
    this.position(id);
    const base = await this.openBaseDirect();
    const via = new SnapshotRead(this.store, base, this.baseReads);
    return {
      read: (offset, target) => this.readSnapshotVia(via, id, offset, target),
      close: () => base.close(),
    };
  }

  private async readSnapshotVia(
    via: SnapshotRead,
    id: number,
    offset: number,
    target: Uint8Array,
  ): Promise<void> {
    checkRange(this.size, offset, target.length);
    return this.gate.withShared(async () => {
      this.check();
      this.position(id);
      await via.read(id, offset, target);
    });
  }

  /** `lend` of snapshot `id`; used by SnapshotDevice. */
  lendSnapshot(id: number, offset: number, length: number, lease: Lease): HostRange | undefined {
    checkRange(this.size, offset, length);
    const fd = this.lendable();
    if (fd === undefined || !this.store.has(id)) return undefined;
    if (!this.snapshotRead.inBase(id, offset, length) || !this.gate.tryShared(lease))
      return undefined;
    this.baseReads.add(lease.released);
    return { fd, position: offset };
  }

  /** Index in the chain of snapshot `id`, or ENOENT. */
  position(id: number): number {
    const pos = this.store.ids().indexOf(id);
    if (pos < 0) throw enoent(`snapshot ${id} does not exist`);
    return pos;
  }

  // ------------------------------------------------------------------ failure

  /** Runs `fn` alone (the gate exclusive), on a volume still serving. */
  protected admin<T>(fn: () => Promise<T>): Promise<T> {
    return this.gate.withExclusive(async () => {
      this.check();
      return this.guard(fn);
    });
  }

  /** Runs `fn`; an I/O failure leaves the volume failed: it must be reopened (recovery). */
  protected async guard<T>(fn: () => Promise<T>): Promise<T> {
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
  protected stop(e: Error): void {
    this.failure ??= e;
    this.log.error(
      { store: this.dir, err: e },
      "I/O error: the volume stops; reopen it to recover",
    );
  }

  protected check(): void {
    if (this.closed) throw eio("volume is closed");
    if (this.failure)
      throw eio(`volume stopped after an I/O error (${this.failure.message}); reopen it`);
  }
}
