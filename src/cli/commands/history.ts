// The verbs on one path's history: `versions` (every distinct version across the snapshots) and
// `restore` (a file or tree back from a snapshot). Each parses, asks the daemon and prints.

import type { Command } from "commander";
import type { PathVersion, RestoreResult, VersionHolder } from "../../daemon/index.js";
import { FsError } from "../../errors.js";
import { type Backend, connect, type OnProgress } from "../connect.js";
import { formatBytes, json, print, progress, table } from "../format.js";
import { type VolumePath, volumePath } from "../volume-path.js";

const named = (h: VersionHolder) => (h.alias ? `${h.gmt} (${h.alias})` : h.gmt);

/** Where a version is: "production" and the snapshots holding it, newest first. */
const where = (v: PathVersion) =>
  [...(v.production ? ["production"] : []), ...v.snapshots.map(named)].join(", ");

/** Milliseconds are enough to read; --json has the nanoseconds. */
const readable = (iso: string) => `${iso.slice(0, 10)} ${iso.slice(11, 23)}`;

function versionsTable(rows: PathVersion[]): string {
  return table(
    ["VERSION", "TYPE", "MTIME", "SIZE"],
    rows.map((v) =>
      v.deleted
        ? [where(v), "-", "-", "deleted"]
        : [where(v), v.type ?? "-", readable(v.mtime ?? ""), String(v.size)],
    ),
  );
}

/** Runs `fn` on the daemon of the volume `at` is in. */
async function onVolume<T>(
  at: VolumePath,
  onProgress: OnProgress | undefined,
  fn: (b: Backend) => Promise<T>,
): Promise<T> {
  const backend = await connect(at.mount.store, { onProgress });
  try {
    if (!backend.mounted)
      throw new FsError("ENOTCONN", `the daemon of ${at.mount.mountpoint} is not running`);
    return await fn(backend);
  } finally {
    await backend.close();
  }
}

function counts(r: RestoreResult): string {
  const parts: string[] = [];
  const add = (n: number, one: string, many: string) => {
    if (n > 0) parts.push(`${n} ${n === 1 ? one : many}`);
  };
  add(r.files, "file", "files");
  add(r.directories, "directory", "directories");
  add(r.symlinks, "symlink", "symlinks");
  add(r.specials, "special file", "special files");
  add(r.hardLinks, "hard link", "hard links");
  parts.push(formatBytes(r.bytes));
  return parts.join(", ");
}

export function historyCommands(cli: Command): void {
  cli
    .command("versions")
    .description(
      "every distinct version of a path in a mounted volume, newest first: production, then " +
        "each snapshot where it differs from the next newer one (identical ones on one line)",
    )
    .argument("<path>")
    .option("--json", "print JSON")
    .action(async (path: string, o) => {
      const at = await volumePath(path);
      const r = await onVolume(at, undefined, (b) => b.call("versions", { path: at.rel }));
      if (o.json) json(r.versions);
      else print(versionsTable(r.versions));
    });

  cli
    .command("restore")
    .description(
      "restore a file or tree of a mounted volume from a snapshot, to its own path or to --to; " +
        "an existing different one is replaced only with --force, and kept in a snapshot first",
    )
    .argument("<path>")
    .requiredOption("--from <snapshot>", "@GMT name, name or id of the snapshot")
    .option("--to <dest>", "where to restore it, in the same volume (default: its own path)")
    .option("--force", "replace a destination that exists and differs")
    .option("--json", "print JSON")
    .action(async (path: string, o) => {
      const at = await volumePath(path);
      let to: string | undefined;
      if (o.to !== undefined) {
        const dest = await volumePath(o.to);
        if (dest.mount.mountpoint !== at.mount.mountpoint)
          throw new FsError(
            "EXDEV",
            `${o.to} is not in the volume of ${path} (mounted at ${at.mount.mountpoint})`,
          );
        to = dest.rel;
      }
      const onProgress = o.json ? undefined : progress("restoring", formatBytes);
      const r = await onVolume(at, onProgress, (b) =>
        b.call("restore", {
          path: at.rel,
          from: o.from,
          to,
          force: o.force === true,
          progress: onProgress !== undefined,
        }),
      );
      if (o.json) {
        json(r);
        return;
      }
      if (r.unchanged) {
        print(`${r.to} already is ${r.path} of ${named(r.from)}: nothing to restore`);
        return;
      }
      print(`restored ${r.path} of ${named(r.from)} to ${r.to}: ${counts(r)}`);
      if (r.keptIn) print(`what ${r.to} was is kept in snapshot ${named(r.keptIn)}`);
    });
}
