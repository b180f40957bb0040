// What a TARGET on the command line names: a store directory, or the mount point of one
// (production or an exposed snapshot).

import { resolve } from "node:path";
import { type ShadowfsMount, shadowfsMounts } from "../daemon/mounts.js";
import { isStore } from "../daemon/paths.js";
import { FsError } from "../errors.js";

/** The store a TARGET names, and its mount if it is a mount point. */
export async function resolveTarget(
  target: string,
): Promise<{ store: string; mount?: ShadowfsMount }> {
  const path = resolve(target);
  const mount = (await shadowfsMounts()).find((m) => m.mountpoint === path);
  if (mount) return { store: mount.store, mount };
  if (await isStore(path)) return { store: path };
  throw new FsError("ENOENT", `${target} is neither a shadowfs store nor a shadowfs mount point`);
}
