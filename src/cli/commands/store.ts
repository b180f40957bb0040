// The verbs of a store as a whole: init, mount, unmount, status. Each parses its arguments, asks
// the store (directly or through its daemon) and prints; none loads the store's code up front.

import { mkdir, rm } from "node:fs/promises";
import { resolve } from "node:path";
import { type Command, Option } from "commander";
import type { OnFull } from "../../cow/index.js";
import { lockHolder } from "../../daemon/lock.js";
import { FsError } from "../../errors.js";
import { resolveTarget, withTarget } from "../connect.js";
import { formatBytes, json, parseSize, print } from "../format.js";

export function storeCommands(cli: Command): void {
  cli
    .command("init")
    .description("create a store holding an empty volume")
    .argument("<store>", "directory to create the store in")
    .option("--size <size>", "volume size", "8G")
    .option("--chunk-size <size>", "copy-on-write chunk size (4K to 1M)")
    .option("--shadow-storage-limit <size>", "most bytes all diff areas may take (0: no limit)")
    .addOption(
      new Option("--on-full <policy>", "when the limit is reached")
        .choices(["delete-oldest", "fail-writes"])
        .default("delete-oldest"),
    )
    .action(async (store: string, o) => {
      const dir = resolve(store);
      const settings = {
        size: parseSize(o.size, "--size"),
        chunkSize: o.chunkSize === undefined ? undefined : parseSize(o.chunkSize, "--chunk-size"),
        shadowStorageLimit:
          o.shadowStorageLimit === undefined
            ? undefined
            : parseSize(o.shadowStorageLimit, "--shadow-storage-limit"),
        onFull: o.onFull as OnFull,
      };
      const { initStore } = await import("../../daemon/index.js");
      // The first directory this made, if any: a refused init removes it again.
      const made = await mkdir(dir, { recursive: true });
      try {
        await initStore(dir, settings);
      } catch (e) {
        if (made !== undefined) await rm(made, { recursive: true, force: true });
        throw e;
      }
      print(`created ${dir} (${formatBytes(settings.size)})`);
    });

  cli
    .command("mount")
    .description("mount a store; snapshots appear under MNT/.snapshots")
    .argument("<store>")
    .argument("<mountpoint>")
    .option("-f, --foreground", "stay in the foreground")
    .option("-o, --options <list>", "mount options (allow_other, ro, kernel_cache, ...)")
    .option("--cache <dir>", "for s3://BUCKET/PREFIX@SNAPSHOT: where fetched chunks are kept")
    .option("--cache-size <size>", "for s3://…: most bytes the cache keeps (default 2G)")
    .option("--endpoint <url>", "for s3://…: the S3 endpoint")
    .addOption(new Option("--ready-fd <fd>").hideHelp().argParser((v) => Number.parseInt(v, 10)))
    .action(async (store: string, mountpoint: string, o) => {
      // Loaded only by the verbs that mount, detach or check a mount point, as is the requester:
      // a command that asks a daemon loads neither.
      const { mountRemote, mountStore } = await import("../launch.js");
      if (store.startsWith("s3://")) {
        await mountRemote({
          address: store,
          mountpoint: resolve(mountpoint),
          options: o.options,
          foreground: o.foreground === true,
          readyFd: o.readyFd,
          endpoint: o.endpoint,
          cache: o.cache === undefined ? undefined : resolve(o.cache),
          cacheSize: o.cacheSize,
        });
        return;
      }
      await mountStore({
        store: resolve(store),
        mountpoint: resolve(mountpoint),
        options: o.options,
        foreground: o.foreground === true,
        readyFd: o.readyFd,
      });
    });

  cli
    .command("unmount")
    .alias("umount")
    .description("flush and unmount a mounted store")
    .argument("<mountpoint>")
    .action(async (mountpoint: string) => {
      const { store, mount } = await resolveTarget(mountpoint);
      if (!mount) throw new FsError("EINVAL", `${mountpoint} is not a mount point`);
      if (store.startsWith("s3://")) {
        // A snapshot mounted from object storage: its daemon stops once it is unmounted.
        const { unmountNow } = await import("../launch.js");
        await unmountNow(mount.mountpoint);
        print(`unmounted ${mount.mountpoint}`);
        return;
      }
      if (mount.snapshot)
        throw new FsError(
          "EINVAL",
          `${mountpoint} is an exposed snapshot: use "snapshot unexpose"`,
        );
      const pid = await lockHolder(store);
      if (pid === undefined) {
        const { detach } = await import("../launch.js");
        await detach(mount.mountpoint);
        print(`detached ${mount.mountpoint} (its daemon was not running)`);
        return;
      }
      await withTarget(mountpoint, {}, (call) => call("unmount"));
      for (let i = 0; i < 600 && (await lockHolder(store)) !== undefined; i++)
        await new Promise((r) => setTimeout(r, 100));
      if ((await lockHolder(store)) !== undefined)
        throw new FsError("ETIMEDOUT", `daemon ${pid} did not stop`);
      print(`unmounted ${mount.mountpoint}`);
    });

  cli
    .command("status")
    .description("volume, space, snapshots and mount of a store")
    .argument("<target>")
    .option("--json", "print JSON")
    .action(async (target: string, o) => {
      const st = await withTarget(target, {}, (call) => call("status"));
      if (o.json) {
        json(st);
        return;
      }
      const limit = st.shadowStorageLimitBytes;
      print(`store:        ${st.store}`);
      print(`mounted on:   ${st.mountpoint ?? "not mounted"}`);
      print(
        `volume:       ${formatBytes(st.volumeBytes)} (${formatBytes(st.usedBytes)} used, ` +
          `${formatBytes(st.freeBytes)} free, ${st.files} files)`,
      );
      print(`snapshots:    ${st.snapshots}`);
      print(
        `shadow space: ${formatBytes(st.shadowStorageUsedBytes)} used of ` +
          `${limit ? formatBytes(limit) : "no limit"} (${st.onFull} when full)`,
      );
    });
}
