// What can be done to an open store, mounted or not: snapshots, revert, storage, status and
// checks. The daemon serves these over its control socket; the command line calls them
// directly when no daemon has the store.
//
// The lock order of an open store, outermost first. Whoever holds one may wait for those below
// it, never for one above it:
//
//  1. The protocol's run slot (VolumeProtocol): one snapshot run of the writers' protocol at a
//     time, held from identify to finish.
//  2. `Service.gate`: changes to production enter it shared (the FUSE ops' `change`); a snapshot's
//     hold, a revert, `settle` and the daemon's stop take it exclusive. Reads never enter it.
//  3. `Service.creating`: snapshot commits one at a time, inside the hold.
//  4. The filesystem's metadata lock (`meta.run` / `meta.view`, src/fs/context.ts): every
//     metadata operation, one at a time. File data is read and written outside it.
//  5. The volume gate (src/cow/volume-io.ts): device I/O enters shared; snapshot creation,
//     deletion, revert and close take it exclusive.
//  6. The catalog lock (`CowVolume.catalogLock`): rewrites of the catalog file.
//
// `Mount.invalidated` waits for the binding's thread that tells the kernel what changed behind
// its back; the kernel locks that thread needs may be held by FUSE requests waiting at the gate,
// so it is never awaited inside the gate (2), nor inside anything that holds it.
//
// A lent read (a FUSE worker thread reading bytes of the base image itself) holds the volume gate
// shared through a `Lease`, which `Gate.tryShared` takes without waiting, so under any lock, and
// which the binding releases once the thread has read the bytes; snapshot administration waits for
// it. A gate lets no new shared holder in while an exclusive one waits: nothing may enter a gate
// shared twice in one chain of calls.

import { randomUUID } from "node:crypto";
import {
  type CowVolume,
  checkStore,
  Gate,
  Mutex,
  NodeHostFs,
  type SnapshotInfo,
} from "../cow/index.js";
import { einval, enoent, FsError } from "../errors.js";
import { FileSystem, type Name, type Seed } from "../fs/filesystem.js";
import { check, fsck } from "../fs/fsck.js";
import { gmtName, isGmtName } from "../mount/index.js";
import type { Provider } from "../snapshot/index.js";
import { storePaths } from "./paths.js";
import {
  type CheckReport,
  checked,
  type RevertResult,
  type SnapshotRow,
  type StatusReport,
  type StorageReport,
  type StoreStatus,
  snapshotRow,
} from "./reports.js";

/**
 * What only a mounted store has: production's mount, its open files and exposed snapshots.
 * The daemon gives it to its Service; a store opened directly has none, and what needs it is
 * refused (`ENOTCONN`, "… is not mounted").
 */
export interface Mount {
  readonly mountpoint: string;
  openFiles(): number;
  exposed(): Array<{ mountpoint: string; id: number }>;
  expose(snapshot: SnapshotInfo, mountpoint: string): Promise<{ mountpoint: string; gmt: string }>;
  unexpose(mountpoint: string): Promise<{ mountpoint: string }>;
  /** A snapshot was deleted: what the mount shows of snapshots is brought up to date. */
  deleted(id: number): void;
  /** Starts stopping the daemon (after the answer is sent). */
  unmount(): void;
  /** Snapshot `s`'s filesystem, read-only: the one `.snapshots` serves. */
  snapshotFs(s: SnapshotInfo): Promise<FileSystem>;
  /**
   * A name in production was made, removed or replaced behind the FUSE operations' back (a
   * restore): the mount and the kernel forget it.
   */
  forget(dir: number, name: Name): void;
  /** An inode of production changed behind their back: the kernel drops what it keeps of it. */
  changed(ino: number): void;
  /** Resolves once the kernel has been told of every change above. Never inside the gate. */
  invalidated(): Promise<void>;
}

type Progress = (done: number, total: number) => void;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Bytes of metadata blocks production's filesystem keeps in memory, four times a filesystem's
 * default. A snapshot's view looks them up (`FileSystem.snapshotWith`): they are also what a
 * snapshot just taken reads without the disk. After bench:mount's production figures (tens of
 * thousands of files made, copied and removed), 64 MiB no longer held the trees written last:
 * reading them from each new snapshot took 8,236 cold reads of 64 KiB in all, and rsync out of
 * 2,000 files took 0.97-1.17 s, find | stat of node_modules 1.06-1.24 s. With 256 MiB: 37 cold
 * reads, 0.81-0.84 s and 0.73-0.83 s (`--only shadowfs,snapshot --passes 2` of an instrumented
 * build, one run each).
 */
const PRODUCTION_CACHE_BYTES = 256 << 20;

/** Opens production's filesystem on `volume` (recovering it after a crash). */
export function openProduction(volume: CowVolume): Promise<FileSystem> {
  return FileSystem.open(volume, { cacheBytes: PRODUCTION_CACHE_BYTES });
}

/** A user-given snapshot name: not empty, no slash, not mistakable for a `@GMT` name or an id. */
export function checkAlias(name: string): void {
  if (name === "" || name.length > 255 || name.includes("/") || name === "." || name === "..")
    throw einval(`snapshot name "${name}": must be 1 to 255 characters, without "/"`);
  if (name.startsWith("@GMT-") || /^[0-9]+$/.test(name))
    throw einval(`snapshot name "${name}": must not look like a @GMT name or a number`);
}

export class Service {
  /** Changes to production enter shared; a snapshot's hold, a revert or a stop, exclusive. */
  readonly gate = new Gate();
  /**
   * Snapshot commits, one at a time: each gets its own @GMT name, a user-given name is taken
   * once. Taken inside the gate's hold.
   */
  private readonly creating = new Mutex();
  private readonly reverted: Array<(fs: FileSystem) => void | Promise<void>> = [];
  private readonly taken: Array<(id: number, seed: Seed | undefined) => void> = [];
  /** Set by the daemon once production is mounted; undefined for a store opened directly. */
  mount: Mount | undefined;
  /** Snapshot sets the timeline runs: their snapshots are tagged as the timeline's. */
  readonly timelineSets = new Set<string>();

  constructor(
    readonly store: string,
    readonly volume: CowVolume,
    /** Replaced by a revert, with the gate held exclusive. */
    public fs: FileSystem,
    /** The time snapshots are taken at, in ms since the epoch. */
    readonly now: () => number = Date.now,
  ) {}

  /**
   * Calls `fn` with the new filesystem after every revert, before changes to production are let
   * in again; the revert ends when it settles.
   */
  onRevert(fn: (fs: FileSystem) => void | Promise<void>): void {
    this.reverted.push(fn);
  }

  /**
   * Calls `fn` after every snapshot taken through the provider, with the metadata the
   * filesystem had in memory, which the snapshot holds too (see `FileSystem.snapshotWith`): one
   * listener keeps it for the snapshot's view, and drops it once it is done with it.
   */
  onSnapshot(fn: (id: number, seed: Seed | undefined) => void): void {
    this.taken.push(fn);
  }

  list(): SnapshotRow[] {
    return this.volume.snapshots().map((s) => this.row(s));
  }

  /** Snapshot `s`'s row, while it is in the store. */
  row(s: SnapshotInfo): SnapshotRow {
    return snapshotRow(s, this.volume.exclusiveBytes(s.id));
  }

  /** Writes out what is staged, so that diff-area sizes count every preserved chunk. */
  private async settle(): Promise<void> {
    if (this.volume.readOnly) return;
    await this.gate.withExclusive(() => this.flush());
  }

  async listSettled(): Promise<SnapshotRow[]> {
    await this.settle();
    return this.list();
  }

  /** The snapshot `ref` names: its `@GMT` name, user-given name or id. */
  find(ref: string): SnapshotInfo {
    const all = this.volume.snapshots();
    const s = isGmtName(ref)
      ? all.find((x) => gmtName(x.createdAt) === ref)
      : /^[0-9]+$/.test(ref)
        ? all.find((x) => x.id === Number(ref))
        : all.find((x) => x.name === ref);
    if (!s) throw enoent(`no snapshot "${ref}" in ${this.store}`);
    return s;
  }

  /**
   * Takes a snapshot: changes to production wait while the filesystem is flushed (so the
   * snapshot reads cleanly with no journal replay) and the store commits it.
   */
  async create(opts: { name?: string } = {}): Promise<SnapshotRow> {
    const provider = this.provider();
    try {
      await provider.hold();
      const made = await provider.commit({ ...opts, setId: randomUUID() });
      return this.row(this.volume.snapshots().find((s) => s.id === made.id)!);
    } finally {
      provider.release();
    }
  }

  private checkName(name: string | undefined): void {
    if (name === undefined) return;
    checkAlias(name);
    if (this.volume.snapshots().some((s) => s.name === name))
      throw new FsError("EEXIST", `a snapshot named "${name}" exists`);
  }

  /** Waits, if need be, until a snapshot made now gets a @GMT name of its own (one a second). */
  private async nextSecond(): Promise<void> {
    const newest = this.volume.snapshots().at(-1);
    if (newest && gmtName(this.now()) === gmtName(newest.createdAt))
      await sleep(1000 - (this.now() % 1000) + 1);
  }

  /**
   * Writes out the filesystem (journal checkpointed) and the store's staged copies. Called with
   * changes flowing, it shortens a hold that follows: that hold has only the rest to flush.
   */
  async flush(): Promise<void> {
    if (this.volume.readOnly) return;
    await this.fs.flush();
    await this.volume.flush();
  }

  /**
   * The snapshot provider of this volume, for the snapshot protocol: `hold` closes the gate to
   * changes (reads go on), waits for those in flight and flushes the filesystem and the store;
   * `commit` takes the snapshot; `release` opens the gate again.
   */
  provider(): Provider {
    let open: (() => void) | undefined;
    let cancelled = false;
    return {
      hold: async () => {
        cancelled = false;
        // Before closing the gate: changes must not wait for the clock.
        await this.nextSecond();
        const release = await this.gate.close();
        if (cancelled) {
          release();
          return;
        }
        open = release;
        await this.flush();
      },
      commit: ({ name, setId }) =>
        this.creating.run(async () => {
          this.checkName(name);
          await this.nextSecond();
          const { taken: info, seed } = await this.fs.snapshotWith(() =>
            this.volume.createSnapshot({
              name,
              setId,
              createdAt: this.now(),
              timeline: this.timelineSets.has(setId),
            }),
          );
          if (this.taken.length === 0) seed?.drop();
          for (const fn of this.taken) fn(info.id, seed);
          return { id: info.id, gmt: gmtName(info.createdAt) };
        }),
      release: () => {
        cancelled = true;
        open?.();
        open = undefined;
      },
      discard: async (id) => {
        if (this.volume.snapshots().some((s) => s.id === id)) await this.volume.deleteSnapshot(id);
      },
    };
  }

  /** The mount, or ENOTCONN for a store opened directly. */
  mounted(): Mount {
    if (!this.mount) throw new FsError("ENOTCONN", `${this.store} is not mounted`);
    return this.mount;
  }

  /** Deletes snapshot `ref`; one exposed on a mount point of its own is refused. */
  async delete(ref: string): Promise<SnapshotRow> {
    const s = this.find(ref);
    for (const e of this.mount?.exposed() ?? [])
      if (e.id === s.id)
        throw new FsError("EBUSY", `snapshot is exposed at ${e.mountpoint}; unexpose it first`);
    const deleted = this.row(s);
    await this.volume.deleteSnapshot(s.id);
    this.mount?.deleted(s.id);
    await this.mount?.invalidated();
    return deleted;
  }

  async expose(ref: string, mountpoint: string): Promise<{ mountpoint: string; gmt: string }> {
    const mount = this.mounted();
    return mount.expose(this.find(ref), mountpoint);
  }

  /**
   * Production becomes snapshot `ref`. Newer snapshots are kept, and a snapshot of production
   * as it was is taken first, so that the revert can itself be undone; with `discardNewer`
   * every newer snapshot is deleted instead (as `zfs rollback -r`). On a mount, it is refused
   * while files are open in production (unless `force`) or snapshots are exposed.
   */
  async revert(
    ref: string,
    opts: { discardNewer?: boolean; force?: boolean } = {},
  ): Promise<RevertResult> {
    this.checkClosed("revert", opts.force);
    if (this.mount && this.mount.exposed().length > 0)
      throw new FsError("EBUSY", "snapshots are exposed; unexpose them first");
    const target = this.find(ref);
    const discarded = opts.discardNewer ? this.list().filter((s) => s.id > target.id) : [];
    const saved = opts.discardNewer
      ? null
      : await this.create({ name: `before-revert-${new Date().toISOString()}` });
    await this.replaceProduction(() =>
      this.volume.revert(target.id, { discardNewer: opts.discardNewer }),
    );
    return { reverted: this.row(target), saved, discarded };
  }

  /**
   * Runs `change`, which rewrites production's blocks on the volume, with changes to production
   * held and the filesystem flushed; then production's filesystem is opened again and whoever
   * serves it is given the new one (`onRevert`).
   */
  async replaceProduction<T>(change: () => Promise<T>): Promise<T> {
    const result = await this.gate.withExclusive(async () => {
      await this.fs.flush();
      const done = await change();
      this.fs = await openProduction(this.volume);
      for (const fn of this.reverted) await fn(this.fs);
      return done;
    });
    // Outside the gate: a FUSE request waiting at it may hold a lock the kernel needs for this.
    await this.mount?.invalidated();
    return result;
  }

  /** EBUSY when production, mounted, has files open, unless `force`. */
  checkClosed(doing: string, force = false): void {
    const open = this.mount?.openFiles() ?? 0;
    if (open > 0 && !force)
      throw new FsError("EBUSY", `${open} files are open in production (use --force to ${doing})`);
  }

  async storage(): Promise<StorageReport> {
    await this.settle();
    const { shadowStorageLimit, onFull } = this.volume.settings;
    return {
      usedBytes: this.volume.storageUsed(),
      limitBytes: shadowStorageLimit,
      onFull,
      snapshots: this.list().map(
        ({ gmt, name, diffAreaBytes, exclusiveBytes, holds, timeline }) => ({
          gmt,
          name,
          diffAreaBytes,
          exclusiveBytes,
          holds,
          timeline,
        }),
      ),
      evictions: this.volume.evictions().map((e) => ({
        gmt: gmtName(e.createdAt),
        name: e.name ?? null,
        evictedAt: new Date(e.evictedAt).toISOString(),
        reason: e.reason,
      })),
    };
  }

  /** The store's figures; on a mount, also the daemon, its open files and exposed snapshots. */
  async status(): Promise<StatusReport> {
    const s = await this.fs.statfs();
    const base: StoreStatus = {
      store: this.store,
      volumeBytes: this.volume.size,
      chunkBytes: this.volume.chunkSize,
      blockBytes: s.blockSize,
      usedBytes: (s.blocks - s.blocksFree) * s.blockSize,
      freeBytes: s.blocksFree * s.blockSize,
      files: s.files - s.filesFree,
      snapshots: this.volume.snapshots().length,
      shadowStorageUsedBytes: this.volume.storageUsed(),
      shadowStorageLimitBytes: this.volume.settings.shadowStorageLimit,
      onFull: this.volume.settings.onFull,
      mountpoint: this.mount?.mountpoint ?? null,
    };
    if (!this.mount) return base;
    return {
      ...base,
      pid: process.pid,
      openFiles: this.mount.openFiles(),
      exposed: this.mount.exposed(),
    };
  }

  /**
   * Checks the store's files and production's filesystem, or with `snapshot` that snapshot's
   * filesystem. A volume open for writing (mounted) is checked through a snapshot taken for the
   * purpose and deleted after: changes wait for that snapshot's hold, never for the check.
   */
  async check(opts: { snapshot?: string; progress?: Progress } = {}): Promise<CheckReport> {
    if (opts.snapshot !== undefined) {
      const s = this.find(opts.snapshot);
      const report = await fsck(this.volume.snapshotDevice(s.id));
      return { ok: report.ok, store: null, fs: report, checked: gmtName(s.createdAt) };
    }
    if (this.volume.readOnly) {
      const st = await checkStore(new NodeHostFs(), storePaths(this.store).volume, opts.progress);
      return checked(st, await check(this.fs));
    }
    const taken = await this.create({ name: `fsck-${new Date().toISOString()}` });
    try {
      const st = await this.volume.checkFiles(opts.progress);
      return checked(st, await fsck(this.volume.snapshotDevice(taken.id)));
    } finally {
      // Gone already if it was evicted to make room meanwhile.
      if (this.volume.snapshots().some((s) => s.id === taken.id))
        await this.delete(String(taken.id));
    }
  }
}
