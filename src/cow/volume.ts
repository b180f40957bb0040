// The copy-on-write volume: snapshot administration (create, delete, revert, evict, holds), its
// settings and the catalog, over its I/O (VolumeIo). It never changes what a snapshot reads.

import { ebusy, eexist, einval, enoent, erofs, FsError } from "../errors.js";
import { basePath, writeCatalog } from "./catalog.js";
import { checkOpenStore, type StoreReport } from "./check.js";
import type { Catalog, Eviction, SnapshotEntry } from "./format.js";
import { Mutex } from "./gate.js";
import type { HostFs } from "./host.js";
import { exclusiveBytes, mergeInto } from "./merge.js";
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
      ids: () => this.store.ids(),
      holdsOn: (id) => this.entries.get(id)?.holds ?? [],
      exclusiveBytes: (id) => this.exclusiveBytes(id),
      used: () => this.storageUsed() + this.writeBack.reservedBytes,
      evict: (id, reason) => this.evict(id, reason),
      refused: (fields, message) => this.log.error({ store: this.dir, ...fields }, message),
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
      openBaseDirect: () => host.open(basePath(dir), { readOnly: true, direct: true }),
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
        guid: entry.guid ?? `${this.cat.uuid}:${id}`,
        name: entry.name,
        setId: entry.setId,
        createdAt: entry.createdAt,
        diffAreaBytes: this.store.bytesUsed(id),
        holds: [...(entry.holds ?? [])],
        timeline: entry.timeline ?? false,
      };
    });
  }

  /** What deleting snapshot `id` alone would free (ENOENT when there is no such snapshot). */
  exclusiveBytes(id: number): number {
    this.position(id);
    return exclusiveBytes(this.store, id);
  }

  /** Puts a hold tagged `tag` on snapshot `id` (nothing then deletes it); EEXIST if it has one. */
  hold(id: number, tag: string): Promise<SnapshotInfo> {
    return this.changeEntry(id, (entry) => {
      const holds = entry.holds ?? [];
      if (holds.includes(tag)) throw eexist(`snapshot ${id} already has a hold tagged ${tag}`);
      entry.holds = [...holds, tag].sort();
    });
  }

  /** Takes the hold tagged `tag` off snapshot `id`; ENOENT if it has none. */
  release(id: number, tag: string): Promise<SnapshotInfo> {
    return this.changeEntry(id, (entry) => {
      const holds = entry.holds ?? [];
      if (!holds.includes(tag)) {
        const has = holds.length ? `its holds: ${holds.join(", ")}` : "it has none";
        throw enoent(`snapshot ${id} has no hold tagged ${tag} (${has})`);
      }
      const rest = holds.filter((t) => t !== tag);
      if (rest.length) entry.holds = rest;
      else delete entry.holds;
    });
  }

  private changeEntry(id: number, change: (entry: SnapshotEntry) => void): Promise<SnapshotInfo> {
    if (this.readOnly) return Promise.reject(erofs("volume"));
    // A catalog write that fails stops the volume (see `guard`): memory need not be rolled back.
    return this.admin(async () => {
      const pos = this.position(id);
      change(this.entries.get(id)!);
      await this.saveCatalog();
      return this.snapshots()[pos]!;
    });
  }

  /** EBUSY naming the holds when snapshot `id` has any. */
  private checkUnheld(id: number, doing: string): void {
    const holds = this.entries.get(id)?.holds;
    if (holds?.length) {
      throw ebusy(`snapshot ${id} is held (${holds.join(", ")}): release it before ${doing}`);
    }
  }

  /** Chunks preserved in snapshot `id`'s diff area (ENOENT when there is no such snapshot). */
  preservedChunks(id: number): number {
    this.position(id);
    return this.store.chunkCount(id);
  }

  /**
   * Which chunks may read otherwise in snapshot `from` than in `to`, a newer snapshot (production
   * when absent): those that a diff area from `from`'s up to `to`'s holds, each preserved when it
   * was written; every other chunk reads the same in both. For production, a write still staged
   * in memory counts once it reaches the base image. ENOENT for a snapshot that does not exist.
   */
  mayDiffer(from: number, to?: number): (chunk: number) => boolean {
    const areas = this.areasBetween(from, to);
    return (chunk) => areas.some((a) => this.store.holds(a, chunk));
  }

  /**
   * Where snapshot `id` reads chunk `chunk` from now: the diff area of that snapshot id, or the
   * base image (undefined). Snapshots that answer alike read the same bytes. ENOENT for a
   * snapshot that does not exist.
   */
  readsFrom(id: number, chunk: number): number | undefined {
    this.position(id);
    return this.store.locate(id, chunk, chunk)[0]!.area;
  }

  /** The diff areas from snapshot `from`'s up to `to`'s (excluded; all newer when absent). */
  private areasBetween(from: number, to?: number): readonly number[] {
    const ids = this.store.ids();
    const first = this.position(from);
    const end = to === undefined ? ids.length : this.position(to);
    if (end < first) throw einval(`snapshot ${from} is newer than snapshot ${to}`);
    return ids.slice(first, end);
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

  /**
   * Changes the shadow storage limit (0: none) or what happens when it is reached, live, as
   * `vssadmin resize shadowstorage` does: a limit below what is used has unheld snapshots evicted
   * at once when onFull is delete-oldest (held ones stay, the limit is set all the same).
   */
  setShadowStorage(change: { limit?: number; onFull?: OnFull }): Promise<void> {
    if (this.readOnly) return Promise.reject(erofs("volume"));
    const { limit, onFull } = change;
    if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 0))
      return Promise.reject(einval(`shadow storage limit ${limit}: must be >= 0`));
    return this.admin(async () => {
      if (limit !== undefined) this.cat.shadowStorageLimit = limit;
      if (onFull !== undefined) this.cat.onFull = onFull;
      await this.saveCatalog();
      if (this.cat.onFull !== "delete-oldest") return;
      try {
        await this.space.makeRoom(0, "new shadow storage limit");
      } catch (e) {
        if (!(e instanceof FsError && e.code === "ENOSPC")) throw e;
      }
    });
  }

  /** The volume's other properties, as `setProperties` stored them. */
  properties(): Record<string, string> {
    return { ...this.cat.properties };
  }

  /** Stores properties; their meaning is the caller's. */
  setProperties(change: Record<string, string>): Promise<void> {
    if (this.readOnly) return Promise.reject(erofs("volume"));
    return this.admin(() => {
      this.cat.properties = { ...this.cat.properties, ...change };
      return this.saveCatalog();
    });
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
    opts: {
      name?: string;
      setId?: string;
      createdAt?: number;
      timeline?: boolean;
      /** A received snapshot's identity (see SnapshotInfo.guid). */
      guid?: string;
    } = {},
  ): Promise<SnapshotInfo> {
    if (this.readOnly) return Promise.reject(erofs("volume"));
    return this.admin(async () => {
      await this.flushLocked();
      const id = this.cat.nextId;
      await this.store.add(id);
      const entry: SnapshotEntry = { id, createdAt: opts.createdAt ?? Date.now(), records: 0 };
      if (opts.name !== undefined) entry.name = opts.name;
      if (opts.setId !== undefined) entry.setId = opts.setId;
      if (opts.timeline) entry.timeline = true;
      if (opts.guid !== undefined) entry.guid = opts.guid;
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
      const pos = this.position(id);
      this.checkUnheld(id, "deleting it");
      await this.flushLocked();
      const older = this.store.ids()[pos - 1];
      if (older !== undefined) await mergeInto(this.store, id, older);
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
      if (opts.discardNewer) {
        for (const newer of this.store.ids().slice(this.position(id) + 1))
          this.checkUnheld(newer, "a revert discards it");
      }
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
    const copies = this.changedBetween(id).filter((c) => !this.store.holds(active, c)).length;
    // Each copy may come in a batch of its own: a chunk, its entry and a batch header.
    const { chunkCost, batchCost } = this.store;
    await this.space.protecting(id, () =>
      this.space.makeRoom(copies * (chunkCost + batchCost), `revert to snapshot ${id}`),
    );
  }

  private async revertLocked(id: number, discardNewer: boolean): Promise<void> {
    const buf = Buffer.alloc(this.chunkSize);
    await this.space.protecting(id, async () => {
      for (const c of this.changedBetween(id)) {
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

  /**
   * Chunks whose contents may differ between snapshot `from` and snapshot `to` (the live volume
   * when undefined), ascending: those preserved in the areas from `from`'s up to `to`'s, `to`'s
   * excluded. Staged writes count once flushed. ENOENT for an unknown snapshot, EINVAL when `to`
   * is older than `from`. Proportional to those areas' chunks, not to the volume.
   */
  changedBetween(from: number, to?: number): number[] {
    const areas = this.areasBetween(from, to);
    if (areas.length === 1) return this.store.chunks(areas[0]!);
    const set = new Set<number>();
    for (const a of areas) for (const c of this.store.chunks(a)) set.add(c);
    return [...set].sort((x, y) => x - y);
  }

  // ------------------------------------------------------------------ shadow storage

  /**
   * Deletes snapshot `id` to make room (see ShadowStorage), recording and logging why; one that
   * is not the oldest first merges into its older neighbour, as `deleteSnapshot` does. Runs
   * inside writes, under the volume gate shared: the merge adds chunks only to an older area,
   * which no write touches, and readers keep the area they chose until they let it go (`drop`
   * waits).
   */
  private async evict(id: number, reason: string): Promise<void> {
    const pos = this.position(id);
    const older = this.store.ids()[pos - 1];
    if (older !== undefined) await mergeInto(this.store, id, older);
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
