// Which paths are mounts, and which of them shadowfs serves.

// Not from the mount layer's index: that loads the FUSE binding, which commands do not need.
import { mountTable } from "../mount/mount-table.js";

export async function isMountpoint(path: string): Promise<boolean> {
  return (await mountTable()).some((m) => m.mountpoint === path);
}

/**
 * Calls `gone` once, when `mountpoint` is no longer a mount point (unmounted from outside: `umount`,
 * `fusermount -u`), looking every `everyMs`; the timer does not keep the process alive. Clear it
 * to stop looking.
 */
export function watchMountpoint(
  mountpoint: string,
  everyMs: number,
  gone: () => void,
): NodeJS.Timeout {
  let told = false;
  const timer = setInterval(() => {
    isMountpoint(mountpoint).then(
      (mounted) => {
        if (mounted || told) return;
        told = true;
        clearInterval(timer);
        gone();
      },
      () => undefined,
    );
  }, everyMs);
  timer.unref();
  return timer;
}

export interface ShadowfsMount {
  mountpoint: string;
  /** The store the mount serves. */
  store: string;
  /** The exposed snapshot's @GMT name, for a snapshot mount. */
  snapshot: string | undefined;
}

/** The shadowfs mounts: their source is the store (`STORE@@GMT-…` for an exposed snapshot). */
export async function shadowfsMounts(): Promise<ShadowfsMount[]> {
  return (await mountTable())
    .filter((m) => m.fstype === "fuse.shadowfs")
    .map((m) => {
      const src = m.source.replace(/\\,/g, ",").replace(/\\\\/g, "\\");
      const at = src.lastIndexOf("@@GMT-");
      return {
        mountpoint: m.mountpoint,
        store: at >= 0 ? src.slice(0, at) : src,
        snapshot: at >= 0 ? src.slice(at + 1) : undefined,
      };
    });
}
