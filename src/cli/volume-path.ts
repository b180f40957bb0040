// Which mounted volume a path on the host is in, and where below that volume's root: what
// `versions` and `restore` send to the volume's daemon. It reads /proc/mounts; it opens no store.

import { realpath } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { type ShadowfsMount, shadowfsMounts } from "../daemon/mounts.js";
import { FsError } from "../errors.js";

export interface VolumePath {
  /** The production mount the path is in. */
  mount: ShadowfsMount;
  /** The path below the volume's root, "a/b/c" ("" for the root). */
  rel: string;
}

/**
 * `path` made absolute with every symlink in its directories resolved, as far as they exist; the
 * last component is kept as it is (a symlink there is meant itself, as `lstat` means it).
 */
async function canonical(path: string): Promise<string> {
  const abs = resolve(path);
  if (abs === "/") return abs;
  const rest = [basename(abs)];
  for (let dir = dirname(abs); ; dir = dirname(dir)) {
    try {
      return join(await realpath(dir), ...rest);
    } catch {
      if (dir === "/") return abs;
      rest.unshift(basename(dir));
    }
  }
}

const inside = (path: string, mnt: string) => path === mnt || path.startsWith(`${mnt}/`);

/**
 * The mounted shadowfs volume `path` is in, and its place there. Refused: a path in no mounted
 * volume, in an exposed snapshot or in `.snapshots` (history is asked of production's paths).
 */
export async function volumePath(path: string): Promise<VolumePath> {
  const abs = await canonical(path);
  const mount = (await shadowfsMounts())
    .filter((m) => inside(abs, m.mountpoint))
    .sort((a, b) => b.mountpoint.length - a.mountpoint.length)[0];
  if (!mount) throw new FsError("ENOENT", `${path} is not in a mounted shadowfs volume`);
  if (mount.snapshot)
    throw new FsError(
      "EINVAL",
      `${path} is in snapshot ${mount.snapshot}, exposed at ${mount.mountpoint}: name the path in production`,
    );
  const rel = abs.slice(mount.mountpoint.length).replace(/^\/+/, "");
  if (rel.split("/")[0] === ".snapshots")
    throw new FsError("EINVAL", `${path} is in .snapshots: name the path in production`);
  return { mount, rel };
}
