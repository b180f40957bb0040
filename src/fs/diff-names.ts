// The names and paths of inodes in one view of a volume, for `snapshot diff`: from the names an
// inode lists (format 2), one directory node a level. It never changes anything it reads.

import { CorruptStoreError } from "../errors.js";
import { dirType, isDir, S_IFDIR } from "./attr.js";
import { directoryOf, type FsContext, ROOT } from "./context.js";
import type { Inode } from "./inode.js";
import { listsAllNames, NAMES_SINCE } from "./name-refs.js";

/** The type a directory entry gives a directory (the entry says it: no inode to read). */
const DT_DIR = dirType(S_IFDIR);

/** One name of an inode: the directory holding it, the name, its path. */
export interface Named {
  parent: number;
  /** Which life of inode `parent` (see `lifeOf`). */
  parentLife: string;
  name: Buffer;
  /** From the root, "/" separated, starting with "/". */
  path: string;
}

/**
 * Which life of its number an inode is: its generation (advanced when the number is taken again)
 * and its birth time. The generation alone repeats after a revert: the number goes back to an
 * older generation and may be taken again, one generation on, by another file.
 */
export const lifeOf = (inode: Readonly<Inode>): string =>
  `${inode.generation}.${inode.birthtime.sec}.${inode.birthtime.nsec}`;

/**
 * Finds names in one view. Inodes that list all their names cost one directory descent per name,
 * and each directory on the way up one more (cached). An inode with more names than it lists, or
 * any inode of a format-1 filesystem (whose inodes list none), is found by one walk of the whole
 * tree, made the first time it is needed: a cost in the size of the tree that only those pay.
 * Runs inside the view's metadata lock (or on a view that nothing changes).
 */
export class Names {
  private readonly dirPaths = new Map<number, string>([[ROOT, ""]]);
  private walked: Map<number, Array<{ parent: number; name: Buffer }>> | undefined;

  constructor(private readonly ctx: FsContext) {}

  /** Every name of `inode` (none for the root or an inode with no name left). */
  async of(inode: Readonly<Inode>): Promise<Named[]> {
    if (inode.mode === 0 || inode.ino === ROOT) return [];
    const out: Named[] = [];
    if (this.ctx.sb.version >= NAMES_SINCE && listsAllNames(inode)) {
      for (const ref of inode.names) {
        const dir = await this.ctx.table.get(ref.parent);
        const e = isDir(dir.mode) ? await directoryOf(this.ctx, dir).atKey(ref) : undefined;
        if (!e || e.ino !== inode.ino)
          throw new CorruptStoreError(
            `inode ${inode.ino}`,
            `its name (directory ${ref.parent}, key ${ref.h}:${ref.m}) is not in that directory`,
          );
        out.push(await this.named(dir, e.name));
      }
      return out;
    }
    for (const { parent, name } of (await this.walk()).get(inode.ino) ?? [])
      out.push(await this.named(await this.ctx.table.get(parent), name));
    return out;
  }

  private async named(dir: Readonly<Inode>, name: Buffer): Promise<Named> {
    const path = `${await this.dirPath(dir)}/${name.toString()}`;
    return { parent: dir.ino, parentLife: lifeOf(dir), name, path };
  }

  /** The path of directory `dir` ("" for the root). */
  private async dirPath(dir: Readonly<Inode>): Promise<string> {
    const known = this.dirPaths.get(dir.ino);
    if (known !== undefined) return known;
    const [first] = await this.of(dir);
    if (!first) throw new CorruptStoreError(`directory ${dir.ino}`, "has no name");
    this.dirPaths.set(dir.ino, first.path);
    return first.path;
  }

  /** Every name in the tree, by inode: for inodes that do not list all theirs. */
  private async walk(): Promise<Map<number, Array<{ parent: number; name: Buffer }>>> {
    if (this.walked) return this.walked;
    const found = new Map<number, Array<{ parent: number; name: Buffer }>>();
    const queue = [ROOT];
    for (let next = 0; next < queue.length; next++) {
      const parent = queue[next]!;
      const directory = directoryOf(this.ctx, await this.ctx.table.get(parent));
      for (let cookie = 0n; ; ) {
        const page = await directory.readdir(cookie, 512);
        if (page.length === 0) break;
        cookie = page.at(-1)!.cookie;
        for (const e of page) {
          const list = found.get(e.ino);
          if (list) list.push({ parent, name: e.name });
          else found.set(e.ino, [{ parent, name: e.name }]);
          if (e.type === DT_DIR) queue.push(e.ino);
        }
      }
    }
    this.walked = found;
    return found;
  }
}
