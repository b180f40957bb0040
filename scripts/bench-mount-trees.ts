// bench:mount's trees of real files, made once per run in its work directory: a copy (cp -a) of
// the machine's own /usr/include and /usr/share/doc for rsync -aHAX in and out, and the
// project's node_modules packed into an uncompressed tar for untar, find | stat and rm -rf; and
// those timed commands. It never mounts anything nor decides where a command runs.

import { existsSync } from "node:fs";
import { lstat, mkdir, opendir, realpath } from "node:fs/promises";
import { join } from "node:path";
import { run, say } from "./bench-common.js";
import { shellQuote } from "./bench-servers.js";

/** What the real tree is copied from; a missing one is left out. */
const REAL_TREE = ["/usr/include", "/usr/share/doc"];

/** What a tree holds: regular files, their bytes, and directories and symbolic links. */
export interface TreeCount {
  files: number;
  bytes: number;
  dirs: number;
  symlinks: number;
}

export interface TreeSources {
  /** The copy of REAL_TREE, on the host, under the work directory. */
  real: string;
  realCount: TreeCount;
  /** node_modules as one tar file (its entries relative to node_modules: ./…). */
  tarball: string;
  tarCount: TreeCount;
}

export const describe = (c: TreeCount) =>
  `${c.files} files of ${(c.bytes / 1e6).toFixed(1)} MB, ${c.dirs} directories, ${c.symlinks} symbolic links`;

/** Counts what `dir` holds, without following symbolic links. */
export async function countTree(dir: string): Promise<TreeCount> {
  const c: TreeCount = { files: 0, bytes: 0, dirs: 0, symlinks: 0 };
  const walk = async (d: string): Promise<void> => {
    for await (const e of await opendir(d)) {
      const path = join(d, e.name);
      if (e.isDirectory()) {
        c.dirs++;
        await walk(path);
      } else if (e.isSymbolicLink()) c.symlinks++;
      else if (e.isFile()) {
        c.files++;
        c.bytes += (await lstat(path)).size;
      }
    }
  };
  await walk(dir);
  return c;
}

/** Makes the real tree's copy and the tarball under `work`, from the machine and `project`. */
export async function makeTreeSources(work: string, project: string): Promise<TreeSources> {
  const from = REAL_TREE.filter((d) => existsSync(d));
  if (from.length === 0) throw new Error(`none of ${REAL_TREE.join(", ")} exists`);
  const real = join(work, "real-tree");
  await mkdir(real);
  say(`copying ${from.join(" and ")} to ${real} (cp -a)`);
  await run("cp", ["-a", ...from, real]);
  // node_modules may be a symbolic link: what it points to is packed, with the links inside it
  // kept as links.
  const modules = await realpath(join(project, "node_modules"));
  const tarball = join(work, "node_modules.tar");
  say(`packing ${modules} into ${tarball} (tar, uncompressed)`);
  await run("tar", ["-cf", tarball, "-C", modules, "."]);
  return { real, realCount: await countTree(real), tarball, tarCount: await countTree(modules) };
}

const seconds = async (p: Promise<{ ms: number }>) => (await p).ms / 1000;

/** Seconds of `rsync -aHAX` of tree `from` into `to`. */
export const rsyncAHAX = (from: string, to: string) =>
  seconds(run("rsync", ["-aHAX", `${from}/`, to]));

/** Seconds of unpacking `tarball` into `dir`, which it makes. */
export async function untar(tarball: string, dir: string): Promise<number> {
  await mkdir(dir);
  return seconds(run("tar", ["-xf", tarball, "-C", dir]));
}

/** Seconds of `find DIR -print0 | xargs -0 stat > /dev/null`. */
export const statTree = (dir: string) =>
  seconds(run("sh", ["-c", `find ${shellQuote(dir)} -print0 | xargs -0 stat > /dev/null`]));

/** Seconds of `rm -rf DIR`. */
export const rmTree = (dir: string) => seconds(run("rm", ["-rf", dir]));
