// The copy-on-write volume: snapshot administration (create, delete, merge, revert, evict) and the
// catalog, over its I/O (VolumeIo). It never changes what an existing snapshot reads.

import { erofs } from "../errors.js";
import { writeCatalog } from "./catalog.js";
import { checkOpenStore, type StoreReport } from "./check.js";
import type { Catalog, Eviction, SnapshotEntry } from "./format.js";
import { Mutex } from "./gate.js";
import type { HostFs } from "./host.js";
import { ShadowStorage } from "./shadow-storage.js";
import { makeStore, openStore } from "./store-files.js";
import { VolumeIo, type VolumeIoParts } from "./volume-io.js";
import {
  type CreateOptions,
  DEFAULT_WRITE_BACK,
  defaultLogger,
  newCatalog,
  type OnFull,
  type OpenOptions,
  type Recovery,
  type SnapshotInfo,
} from "./volume-options.js";

/**
 * Locking: the volume gate (see VolumeIo) admits I/O shared and the administration here exclusive;
 * catalog writes take the catalog lock too, since an eviction inside a write may write it.
 */
export class CowVolume extends VolumeIo {
  /** Serialises catalog writes. */
  private readonly catalogLock = new Mutex();
  /**
   * The catalog's entry of each snapshot in the store's chain, by id; the chain gives the order.
   * Guarded by the volume gate (exclusive for administration, shared for I/O), and changed in the
   * same synchronous steps as the chain.
   */
  private readonly entries = new Map<number, SnapshotEntry>();
  private readonly space: ShadowStorage;
  /** What the open had to do to make the store consistent. */
  recovery!: Recovery;

  private constructor(
    private readonly host: HostFs,
    /** Guarded by the volume gate, and written under the catalog lock. */
    private readonly cat: Catalog,
    parts: VolumeIoParts,
  ) {
    super(parts);
    for (const entry of cat.snapshots) this.entries.set(entry.id, entry);
    this.space = new ShadowStorage({
      settings: () => this.cat,
      oldest: () => this.store.ids()[0],
      used: () => this.storageUsed() + this.writeBack.reservedBytes,
      evictOldest: (reason) => this.evictOldest(reason),
    });
  }

  protected makeRoom(bytes: number, what: string): Promise<boolean> {
    return this.space.makeRoom(bytes, what);
  }

  /** Makes a new, empty store in `dir` (created if missing; must not hold a store). */
  static async create(
    host: HostFs,
    dir: string,
    opts: CreateOptions & OpenOptions,
  ): Promise<CowVolume> {
    await makeStore(host, dir, newCatalog(opts));
    return CowVolume.open(host, dir, opts);
  }

  /** Opens a store, recovering from an unclean shutdown; refuses a damaged one with CorruptStoreError. */
  static async open(host: HostFs, dir: string, opts: OpenOptions = {}): Promise<CowVolume> {
    const { cat, base, store, recovery } = await openStore(host, dir, opts.readOnly ?? false);
    const vol = new CowVolume(host, cat, {
      dir,
      size: cat.volumeSize,
      store,
      base,
      readOnly: opts.readOnly ?? false,
      log: opts.logger ?? defaultLogger(),
      writeBackBytes: opts.writeBackBytes ?? DEFAULT_WRITE_BACK,
    });
    vol.recovery = recovery;
    try {
      if (!vol.readOnly) await vol.recover();
    } catch (e) {
      await vol.closeFiles();
      throw e;
    }
    return vol;
  }

  /** Records that the store is open (clean: false) and completes an interrupted revert. */
  private async recover(): Promise<void> {
    const { cat, recovery: rec } = this;
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
    await Promise.allSettled([this.base.close(), this.store.close()]);
  }

  // ------------------------------------------------------------------ snapshots

  snapshots(): SnapshotInfo[] {
    return this.store.ids().map((id) => {
      const entry = this.entries.get(id)!;
      return {
        id,
        name: entry.name,
        setId: entry.setId,
        createdAt: entry.createdAt,
        diffAreaBytes: this.store.bytesUsed(id),
      };
    });
  }

  /** Chunks preserved in snapshot `id`'s diff area (ENOENT when there is no such snapshot). */
  preservedChunks(id: number): number {
    this.position(id);
    return this.store.chunkCount(id);
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
    return this.store.ids().reduce((sum, id) => sum + this.store.bytesUsed(id), 0);
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
      await this.store.add(id);
      const entry: SnapshotEntry = { id, createdAt: opts.createdAt ?? Date.now(), records: 0 };
      if (opts.name !== undefined) entry.name = opts.name;
      if (opts.setId !== undefined) entry.setId = opts.setId;
      this.cat.nextId++;
      this.entries.set(id, entry);
      try {
        await this.saveCatalog();
      } catch (e) {
        // Its files stay (closed with the store) until the next open removes them as strays.
        this.store.detach(id);
        this.entries.delete(id);
        throw e;
      }
      return this.snapshots().at(-1)!;
    });
  }

  /**
   * Checks the store's files while the volume is open and written (`checkOpenStore`): each diff
   * area is checked while the snapshot chain waits, writes do not. With a snapshot taken just
   * before, every area checked is one that writes no longer change.
   */
  checkFiles(onProgress?: (done: number, total: number) => void): Promise<StoreReport> {
    return checkOpenStore(this.host, this.dir, (fn) => this.gate.withShared(fn), onProgress);
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
      const older = this.store.ids()[pos - 1];
      if (older !== undefined) await this.merge(id, older);
      this.remove(id);
      await this.saveCatalog();
      await this.store.drop(id);
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
    const active = this.store.newest()!;
    const copies = this.changedSince(id).filter((c) => !this.store.holds(active, c)).length;
    // Each copy may come in a batch of its own: a chunk, its entry and a batch header.
    const { chunkCost, batchCost } = this.store;
    await this.space.protecting(id, () =>
      this.space.makeRoom(copies * (chunkCost + batchCost), `revert to snapshot ${id}`),
    );
  }

  private async revertLocked(id: number, discardNewer: boolean): Promise<void> {
    const buf = Buffer.alloc(this.chunkSize);
    await this.space.protecting(id, async () => {
      for (const c of this.changedSince(id)) {
        await this.snapshotRead.read(id, c * this.chunkSize, buf);
        await this.writeBack.write(c * this.chunkSize, buf);
      }
      await this.flushLocked();
    });
    // The live volume now equals the snapshot, so the newer diff areas hold nothing that
    // it or an older snapshot reads through them: they go without a merge.
    const dropped = discardNewer ? this.store.ids().slice(this.position(id) + 1) : [];
    for (const newer of dropped) this.remove(newer);
    this.cat.revert = undefined;
    await this.saveCatalog();
    for (const newer of dropped) await this.store.drop(newer);
  }

  /** Chunks whose live contents may differ from those of snapshot `id`. */
  private changedSince(id: number): number[] {
    const set = new Set<number>();
    for (const a of this.store.ids().slice(this.position(id)))
      for (const c of this.store.chunks(a)) set.add(c);
    return [...set].sort((a, b) => a - b);
  }

  /** Preserves in area `into` the chunks of area `from` that it lacks, 8 MiB a batch. */
  private async merge(from: number, into: number): Promise<void> {
    const { store, chunkSize } = this;
    const todo = store.chunks(from).filter((c) => !store.holds(into, c));
    const perBatch = Math.max(1, Math.floor((8 << 20) / chunkSize));
    for (let i = 0; i < todo.length; i += perBatch) {
      const chunks = await Promise.all(
        todo.slice(i, i + perBatch).map(async (chunk) => {
          const data = Buffer.alloc(chunkSize);
          await store.read({ chunk, count: 1, area: from }, data);
          return { chunk, data };
        }),
      );
      await store.publish(await store.write(into, chunks));
    }
  }

  // ------------------------------------------------------------------ shadow storage

  /** Deletes the oldest snapshot to make room (see ShadowStorage), recording and logging why. */
  private async evictOldest(reason: string): Promise<void> {
    const id = this.store.ids()[0]!;
    const entry = this.entries.get(id)!;
    this.remove(id);
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
    await this.store.drop(id);
  }

  // ------------------------------------------------------------------ helpers

  /** Takes snapshot `id` out of the chain and the catalog's list, in one step; its files stay. */
  private remove(id: number): void {
    this.store.detach(id);
    this.entries.delete(id);
  }

  /** Writes the catalog with the snapshot list and each area's checkpoint (durable records). */
  private saveCatalog(): Promise<void> {
    return this.catalogLock.run(async () => {
      this.cat.snapshots = this.store.ids().map((id) => ({
        ...this.entries.get(id)!,
        records: this.store.checkpoint(id),
      }));
      await writeCatalog(this.host, this.dir, this.cat);
    });
  }
}
