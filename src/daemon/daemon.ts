// The daemon of one store: holds its lock, mounts production (with `.snapshots`), serves
// exposed snapshots, and answers the control socket until it is stopped.

import { unlink } from "node:fs/promises";
import type { Server } from "node:net";
import { resolve } from "node:path";
import type pino from "pino";
import type { Logger, SnapshotInfo } from "../cow/index.js";
import { FsError } from "../errors.js";
import { FuseMount, FuseOps, requestCaller, SnapshotViews, View } from "../mount/index.js";
import { killRunningWriters, makeRuntimeDir } from "../snapshot/index.js";
import { controlMethods } from "./handlers.js";
import { KernelCache } from "./kernel-cache.js";
import { lockStore } from "./lock.js";
import { isMountpoint, watchMountpoint } from "./mounts.js";
import { storePaths } from "./paths.js";
import { VolumeProtocol } from "./protocol.js";
import { removeRestoreLeftovers } from "./restore.js";
import { Retention } from "./retention-admin.js";
import { serve } from "./rpc.js";
import { type Mount, Service } from "./service.js";
import { openStore } from "./store.js";
import { Timeline } from "./timeline.js";

/** How long a stop waits for the requester of an abandoned snapshot to record it and go. */
const STOP_GRACE_MS = 2000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface DaemonOptions {
  store: string;
  mountpoint: string;
  /** Checked `-o` options. */
  options: string[];
  logger: Logger & pino.Logger;
}

/** What the mount had to repair after the previous daemon died. */
export interface Started {
  pid: number;
  mountpoint: string;
  recovered: string | null;
}

/**
 * Production's names (present or absent) and the attributes of files with one name stay in the
 * kernel for a minute, as a snapshot's do: what changes through the kernel, it keeps right
 * itself, and what the daemon changes behind it (restore, revert, snapshots under `.snapshots`)
 * is dropped from it at once (kernel-cache.ts), so the timeout only bounds what the kernel holds
 * for nothing. attr_timeout=0 is for hard-linked files (View.cacheable). No auto_cache: whether
 * the kernel keeps a file's data at an open is the filesystem's decision (FuseOps open), and
 * libfuse's would cost a getattr per open.
 */
const PRODUCTION_OPTIONS = ["entry_timeout=60", "negative_timeout=60", "attr_timeout=0"];
/** Seconds production attributes that only change through the kernel stay cached (FuseOps). */
const PRODUCTION_ATTR_TIMEOUT = 60;
/** Nothing in a snapshot changes; the view keeps every file's data at each open (FuseOps). */
const SNAPSHOT_OPTIONS = ["ro", "entry_timeout=60", "attr_timeout=60"];
/** Production's options an exposed snapshot shares: who may enter it, and the kernel's checks. */
const SHARED_OPTIONS = new Set(["allow_other", "allow_root", "default_permissions"]);

export class Daemon {
  private readonly exposed = new Map<string, { mount: FuseMount; id: number }>();
  private server: Server | undefined;
  private watch: NodeJS.Timeout | undefined;
  private stopping: Promise<void> | undefined;
  private protocol: VolumeProtocol | undefined;
  private timeline: Timeline | undefined;
  private kernel: KernelCache | undefined;
  /** Resolves when the daemon has stopped. */
  readonly stopped: Promise<void>;
  private done!: () => void;

  private constructor(
    private readonly opts: DaemonOptions,
    private readonly service: Service,
    private readonly unlock: () => Promise<void>,
    private readonly root: View,
    private readonly views: SnapshotViews,
    private readonly ops: FuseOps,
    private mount: FuseMount | undefined,
  ) {
    this.stopped = new Promise((r) => {
      this.done = r;
    });
  }

  static async start(opts: DaemonOptions): Promise<{ daemon: Daemon; started: Started }> {
    const paths = storePaths(opts.store);
    const mountpoint = resolve(opts.mountpoint);
    if (await isMountpoint(mountpoint))
      throw new FsError("EBUSY", `${mountpoint} is already a mount point`);
    const unlock = await lockStore(paths.dir);
    try {
      const { volume, fs } = await openStore(paths.dir, { logger: opts.logger });
      const service = new Service(paths.dir, volume, fs);
      const leftovers = await removeRestoreLeftovers(service);
      if (leftovers > 0)
        opts.logger.warn({ store: paths.dir, leftovers }, "removed what interrupted restores left");
      const root = new View(fs, "production");
      const views = new SnapshotViews(volume);
      let daemon: Daemon | undefined;
      const kernel = new KernelCache(
        () => daemon?.mount,
        root,
        () => volume.snapshots(),
      );
      service.onSnapshot((id, seed) => {
        views.taken(id, seed);
        kernel.snapshotsChanged();
      });
      const log = opts.logger;
      const ops = new FuseOps({
        root,
        snapshots: views,
        gate: service.gate,
        log,
        caller: requestCaller,
        attrTimeout: PRODUCTION_ATTR_TIMEOUT,
        snapdirTime: () => {
          const ms = volume.snapshots().at(-1)?.createdAt ?? 0;
          return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1e6 };
        },
      });
      daemon = new Daemon(opts, service, unlock, root, views, ops, undefined);
      daemon.kernel = kernel;
      service.onRevert(async (next) => {
        root.replace(next);
        views.refresh(true);
        // What the kernel keeps is production before the revert: it is all dropped (the
        // revert waits for that once the gate is open again).
        await kernel.reverted(next);
      });
      const protocol = new VolumeProtocol(service, mountpoint);
      daemon.protocol = protocol;
      const retention = new Retention(service);
      try {
        daemon.mount = await FuseMount.mount({
          mountpoint,
          source: paths.dir,
          ops: ops.operations(),
          options: [...PRODUCTION_OPTIONS, ...opts.options],
        });
        await makeRuntimeDir();
        service.mount = daemon.asMount(mountpoint);
        daemon.server = await serve(
          paths.socket,
          controlMethods(service, protocol, retention),
          (what, err) =>
            log.warn({ err: err instanceof Error ? err.message : err }, `control socket: ${what}`),
        );
      } catch (e) {
        await daemon.stop();
        throw e;
      }
      daemon.watchMount(mountpoint);
      daemon.timeline = new Timeline(service, protocol, retention, log);
      daemon.timeline.start();
      const r = volume.recovery;
      const recovered = r.uncleanShutdown
        ? `recovered after an unclean shutdown (${r.droppedRecords} unfinished copy-on-write records dropped, ` +
          `${r.removedFiles.length} stray files removed${r.resumedRevert !== undefined ? ", interrupted revert completed" : ""}; journal replayed)`
        : null;
      log.info({ store: paths.dir, mountpoint, recovered }, "mounted");
      return { daemon, started: { pid: process.pid, mountpoint, recovered } };
    } catch (e) {
      await unlock();
      throw e;
    }
  }

  /** Someone unmounted production behind the daemon's back: it stops too. */
  private watchMount(mountpoint: string): void {
    this.watch = watchMountpoint(mountpoint, 2000, () => {
      if (!this.mount) return;
      this.opts.logger.warn({ mountpoint }, "unmounted from outside; stopping");
      this.mount = undefined;
      void this.stop();
    });
  }

  /** What the Service asks of production's mount and the exposed snapshots. */
  private asMount(mountpoint: string): Mount {
    return {
      mountpoint,
      openFiles: () => this.ops.openCount(this.root),
      exposed: () => [...this.exposed].map(([mountpoint, e]) => ({ mountpoint, id: e.id })),
      expose: (snap, where) => this.expose(snap, where),
      unexpose: (where) => this.unexpose(where),
      deleted: () => {
        this.views.refresh();
        this.kernel?.snapshotsChanged();
      },
      unmount: () => setImmediate(() => void this.stop()),
      snapshotFs: async (snap) => (await this.views.viewOf(snap)).fs,
      forget: (dir, name) => this.kernel?.named(dir, name),
      changed: (ino) => this.kernel?.changed(ino),
      invalidated: () => this.kernel?.invalidated() ?? Promise.resolve(),
    };
  }

  private async expose(
    snap: SnapshotInfo,
    where: string,
  ): Promise<{ mountpoint: string; gmt: string }> {
    const mountpoint = resolve(where);
    if (this.exposed.has(mountpoint) || (await isMountpoint(mountpoint)))
      throw new FsError("EBUSY", `${mountpoint} is already a mount point`);
    const v = await this.views.viewOf(snap);
    const ops = new FuseOps({
      root: v,
      gate: this.service.gate,
      log: this.opts.logger,
      caller: requestCaller,
    });
    const mount = await FuseMount.mount({
      mountpoint,
      source: `${storePaths(this.opts.store).dir}@${v.label}`,
      ops: ops.operations(),
      options: [...SNAPSHOT_OPTIONS, ...this.opts.options.filter((o) => SHARED_OPTIONS.has(o))],
    });
    this.exposed.set(mountpoint, { mount, id: snap.id });
    this.opts.logger.info({ mountpoint, snapshot: v.label }, "exposed");
    return { mountpoint, gmt: v.label };
  }

  private async unexpose(where: string): Promise<{ mountpoint: string }> {
    const mountpoint = resolve(where);
    const e = this.exposed.get(mountpoint);
    if (!e) throw new FsError("ENOENT", `no snapshot of this store is exposed at ${mountpoint}`);
    await e.mount.unmount();
    this.exposed.delete(mountpoint);
    return { mountpoint };
  }

  /**
   * Unmounts everything, lets running operations finish, flushes, closes and unlocks. A snapshot
   * under way is abandoned first, and its requester given STOP_GRACE_MS to record that in the
   * history and go.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      clearInterval(this.watch);
      const log = this.opts.logger;
      const step = async (what: string, fn: () => Promise<unknown>) => {
        try {
          await fn();
        } catch (e) {
          log.error({ err: (e as Error).message }, `stopping: ${what} failed`);
        }
      };
      // No new timeline snapshot; then a snapshot under way is abandoned: writers thawed,
      // changes let through.
      const ticking = this.timeline?.stop();
      await step("abandoning the snapshot under way", async () => {
        const leaving = this.protocol?.requesterLeaving();
        await this.protocol?.abort("the daemon is stopping");
        killRunningWriters();
        await ticking;
        // Its requester, told, records the run in the history before the socket closes.
        if (leaving) await Promise.race([leaving, sleep(STOP_GRACE_MS)]);
      });
      await step("closing the control socket", async () => {
        this.server?.close();
        await unlink(storePaths(this.opts.store).socket).catch(() => undefined);
      });
      for (const mnt of [...this.exposed.keys()])
        await step(`unexposing ${mnt}`, () => this.unexpose(mnt));
      if (this.mount) await step("unmounting", () => this.mount!.unmount());
      await step("flushing and closing", () =>
        this.service.gate.withExclusive(async () => {
          await this.service.fs.close();
          await this.service.volume.close();
        }),
      );
      await step("unlocking", () => this.unlock());
      log.info({ store: this.opts.store }, "stopped");
      this.done();
    })();
    return this.stopping;
  }
}
