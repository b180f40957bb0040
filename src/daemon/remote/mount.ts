// A snapshot in object storage mounted read-only where it lies: its filesystem on a view that
// fetches chunks as they are read (lazy.ts). It stops when unmounted, from here or from outside;
// it never writes to object storage.

import { Gate, SnapshotDevice } from "../../cow/index.js";
import type { Logger } from "../../cow/volume-options.js";
import { FsError } from "../../errors.js";
import { FileSystem } from "../../fs/filesystem.js";
import { FuseMount, FuseOps, gmtName, requestCaller, View } from "../../mount/index.js";
import { isMountpoint, watchMountpoint } from "../mounts.js";
import { findRemote } from "./admin.js";
import { ChunkCache, type LazyTraffic, RemoteSource } from "./lazy.js";
import type { Remote } from "./repository.js";
import type { RemoteUrl } from "./url.js";

/** Nothing in a snapshot changes: names, attributes and data stay in the kernel. */
const OPTIONS = ["ro", "entry_timeout=60", "attr_timeout=60"];
/** Options of `-o` a remote mount takes: who may enter it, and the kernel's checks. */
const ALLOWED = new Set(["ro", "allow_other", "allow_root", "default_permissions"]);

export interface RemoteMountOptions {
  url: RemoteUrl & { snapshot: string };
  remote: Remote;
  mountpoint: string;
  cacheDir: string;
  cacheBytes: number;
  options: string[];
  logger: Logger;
}

export class RemoteMount {
  private stopping: Promise<void> | undefined;
  private watch: NodeJS.Timeout | undefined;
  readonly stopped: Promise<void>;
  private done!: () => void;

  private constructor(
    private readonly opts: RemoteMountOptions,
    private readonly source: RemoteSource,
    private mount: FuseMount | undefined,
    readonly snapshot: string,
  ) {
    this.stopped = new Promise((r) => {
      this.done = r;
    });
  }

  static async start(opts: RemoteMountOptions): Promise<RemoteMount> {
    const refused = opts.options.filter((o) => !ALLOWED.has(o));
    if (refused.length > 0)
      throw new FsError("EINVAL", `-o ${refused.join(",")}: not for a mount from object storage`);
    if (await isMountpoint(opts.mountpoint))
      throw new FsError("EBUSY", `${opts.mountpoint} is already a mount point`);
    const m = findRemote(await opts.remote.manifests(), opts.url.snapshot, opts.remote.where);
    const cache = await ChunkCache.open(opts.cacheDir, opts.cacheBytes);
    const source = new RemoteSource(opts.remote, m, cache);
    const fs = await FileSystem.open(new SnapshotDevice(source, m.snapshot.id));
    const gmt = gmtName(m.snapshot.createdAt);
    const ops = new FuseOps({
      root: new View(fs, gmt),
      gate: new Gate(),
      log: opts.logger,
      caller: requestCaller,
    });
    const mount = await FuseMount.mount({
      mountpoint: opts.mountpoint,
      source: `${opts.url.where}@${gmt}`,
      ops: ops.operations(),
      options: [...OPTIONS, ...opts.options],
    });
    const r = new RemoteMount(opts, source, mount, gmt);
    r.watchMount();
    opts.logger.info(
      { remote: opts.url.where, snapshot: gmt, mountpoint: opts.mountpoint },
      "mounted",
    );
    return r;
  }

  get traffic(): LazyTraffic {
    return this.source.traffic;
  }

  /** Unmounted from outside (`shadowfs unmount`, `fusermount -u`): it stops too. */
  private watchMount(): void {
    this.watch = watchMountpoint(this.opts.mountpoint, 500, () => {
      this.mount = undefined;
      void this.stop();
    });
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      clearInterval(this.watch);
      try {
        await this.mount?.unmount();
      } catch (e) {
        this.opts.logger.error({ err: (e as Error).message }, "stopping: unmounting failed");
      }
      this.opts.logger.info({ mountpoint: this.opts.mountpoint, ...this.traffic }, "stopped");
      this.done();
    })();
    return this.stopping;
  }
}
