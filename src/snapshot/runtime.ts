// Where the daemon of a store keeps what must not live in the store: its control socket, under
// /run/shadowfs/ (a directory only its owner may enter), named after the store's real path, so
// that a store may sit on any filesystem that holds regular files (NFS, another FUSE mount).

import { createHash } from "node:crypto";
import { realpathSync } from "node:fs";
import { chmod, lstat, mkdir } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { FsError } from "../errors.js";

/**
 * The directory of runtime files: /run/shadowfs for root; for another user, shadowfs under
 * $XDG_RUNTIME_DIR (systemd's per-user /run/user/UID), else /tmp/shadowfs-UID.
 */
export function runtimeDir(): string {
  const uid = process.getuid?.() ?? 0;
  if (uid === 0) return "/run/shadowfs";
  const xdg = process.env.XDG_RUNTIME_DIR;
  return xdg ? join(xdg, "shadowfs") : `/tmp/shadowfs-${uid}`;
}

/**
 * The control socket of `store`'s daemon. The name holds the store's last path component (for
 * whoever lists the directory) and a hash of its real path (so that two stores never share one,
 * and the path stays within the 107 bytes a socket address holds, however deep the store is).
 */
export function controlSocket(store: string): string {
  let real = resolve(store);
  try {
    real = realpathSync(real);
  } catch {
    // Not there (yet): its absolute path names it.
  }
  const hash = createHash("sha256").update(real).digest("hex").slice(0, 16);
  const name = basename(real)
    .replace(/[^A-Za-z0-9._-]/g, "_")
    .slice(0, 32);
  return join(runtimeDir(), `${name}-${hash}.sock`);
}

/**
 * Makes the runtime directory if need be, and checks it is one only this user may enter: a
 * directory (not a link) of this user, mode 0700 (made so if it was wider).
 */
export async function makeRuntimeDir(): Promise<string> {
  const dir = runtimeDir();
  const uid = process.getuid?.() ?? 0;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await lstat(dir);
  if (!st.isDirectory() || st.uid !== uid)
    throw new FsError("EACCES", `${dir} must be a directory of user ${uid}; remove it`);
  if ((st.mode & 0o777) !== 0o700) await chmod(dir, 0o700);
  return dir;
}
