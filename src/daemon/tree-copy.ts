// Copies a file or a tree from one filesystem into another on their inode APIs (contents with
// their holes, modes, owners, times, xattrs, symlinks, device nodes, hard links), and removes one.
// It never decides where a copy goes or what it may replace: restore.ts does.

import { type Attr, isDir, isLink, isReg } from "../fs/attr.js";
import { type FileSystem, type Name, SUPERUSER } from "../fs/filesystem.js";

/**
 * Bytes of a file read and written at once. Two such buffers are in use: one is read into while
 * the other is written. A write holds the target's metadata lock while its data goes out, so
 * larger pieces would make other changes wait longer.
 */
export const PIECE = 8 << 20;

/** The filesystem a copy goes into, and how a change to it is made. */
export interface Target {
  /**
   * Runs one change to the target's filesystem: through production's gate, after checking that
   * it is still production's filesystem (a revert replaces it).
   */
  change<T>(fn: (fs: FileSystem) => Promise<T>): Promise<T>;
  /** Reads from it (no gate: reads never enter it). */
  readonly fs: FileSystem;
  /** A name of directory `dir` was made, removed or replaced behind the mount's back. */
  forget(dir: number, name: Name): void;
  /** Inode `ino` changed behind the mount's back: data, attributes or link count. */
  changed(ino: number): void;
}

export interface CopyCounts {
  files: number;
  directories: number;
  symlinks: number;
  /** Device nodes, fifos and sockets. */
  specials: number;
  /** Names made as hard links to a file copied under another name before. */
  hardLinks: number;
  /** Bytes of data copied (holes are not copied). */
  bytes: number;
}

const DOTS = new Set([".", ".."]);

/** The entries of directory `ino` but "." and "..", page by page. */
export async function* entries(
  fs: FileSystem,
  ino: number,
): AsyncGenerator<{ name: Buffer; ino: number }> {
  for (let cookie = 0n; ; ) {
    const page = await fs.readdir(ino, cookie, 1024);
    if (page.length === 0) return;
    for (const e of page) if (!DOTS.has(e.name.toString("latin1"))) yield e;
    cookie = page[page.length - 1]!.cookie;
  }
}

/** Files (each inode once) and their bytes (holes too) in the tree at `a` in `fs`. */
export async function measure(fs: FileSystem, a: Attr): Promise<{ bytes: number; files: number }> {
  const seen = new Set<number>();
  const total = { bytes: 0, files: 0 };
  const visit = async (x: Attr): Promise<void> => {
    if (isDir(x.mode)) {
      for await (const e of entries(fs, x.ino)) await visit(await fs.getattr(e.ino));
      return;
    }
    if (x.nlink > 1) {
      if (seen.has(x.ino)) return;
      seen.add(x.ino);
    }
    total.files++;
    if (isReg(x.mode)) total.bytes += x.size;
  };
  await visit(a);
  return total;
}

type Run = { offset: number; length: number };

/** `runs` joined where they touch in the file, wherever they lie on the device. */
function joined(runs: readonly Run[]): Run[] {
  const out: Run[] = [];
  for (const r of runs) {
    const last = out.at(-1);
    if (last && last.offset + last.length === r.offset) last.length += r.length;
    else out.push({ offset: r.offset, length: r.length });
  }
  return out;
}

/** One copy of a tree from `src` into a target; `counts` says what it has made so far. */
export class TreeCopy {
  readonly counts: CopyCounts = {
    files: 0,
    directories: 0,
    symlinks: 0,
    specials: 0,
    hardLinks: 0,
    bytes: 0,
  };
  /** Copied inodes with more than one name: the source's number to the copy's. */
  private readonly linked = new Map<number, number>();
  private readonly buffers = [Buffer.allocUnsafe(PIECE), Buffer.allocUnsafe(PIECE)];
  /** Bytes of files gone through, holes included: what `measure` counts. */
  private covered = 0;

  constructor(
    private readonly src: FileSystem,
    private readonly to: Target,
    /** Called after each piece of a file, with the bytes of files gone through (holes too). */
    private readonly onBytes: (covered: number) => void = () => undefined,
  ) {}

  /** Copies what `a` is in the source as `name` in directory `parent` of the target. */
  async copy(a: Attr, parent: number, name: Name): Promise<void> {
    const { counts, to } = this;
    if (!isDir(a.mode) && a.nlink > 1) {
      const made = this.linked.get(a.ino);
      if (made !== undefined) {
        await to.change((fs) => fs.link(made, parent, name));
        to.forget(parent, name);
        to.changed(made);
        counts.hardLinks++;
        return;
      }
    }
    const perm = a.mode & 0o7777;
    let made: Attr;
    if (isDir(a.mode)) {
      made = await to.change((fs) => fs.mkdir(parent, name, perm, SUPERUSER));
      counts.directories++;
    } else if (isReg(a.mode)) {
      made = await to.change((fs) => fs.create(parent, name, perm, SUPERUSER));
      counts.files++;
    } else if (isLink(a.mode)) {
      const target = await this.src.readlink(a.ino);
      made = await to.change((fs) => fs.symlink(parent, name, target, SUPERUSER));
      counts.symlinks++;
    } else {
      made = await to.change((fs) => fs.mknod(parent, name, a.mode, a.rdev, SUPERUSER));
      counts.specials++;
    }
    to.forget(parent, name);
    if (!isDir(a.mode) && a.nlink > 1) this.linked.set(a.ino, made.ino);
    await this.xattrs(a.ino, made.ino);
    if (isReg(a.mode)) await this.data(a, made.ino);
    if (isDir(a.mode))
      for await (const e of entries(this.src, a.ino))
        await this.copy(await this.src.getattr(e.ino), made.ino, e.name);
    // Last, as one change: the owner (which would clear set-ID bits set before it), the mode,
    // the size past the last data (a hole at the end), and the times the steps above changed.
    await to.change((fs) =>
      fs.setattr(made.ino, {
        uid: a.uid,
        gid: a.gid,
        ...(isLink(a.mode) ? {} : { mode: a.mode }),
        ...(isReg(a.mode) ? { size: a.size } : {}),
        atime: a.atime,
        mtime: a.mtime,
      }),
    );
    to.changed(made.ino);
  }

  private async xattrs(from: number, into: number): Promise<void> {
    for (const name of await this.src.listxattr(from, SUPERUSER)) {
      const value = await this.src.getxattr(from, name, SUPERUSER);
      await this.to.change((fs) => fs.setxattr(into, name, value, {}, SUPERUSER));
    }
  }

  /**
   * The data of regular file `a` into `ino`: only the parts that hold data, so holes stay holes;
   * the next piece is read while the last one is written.
   */
  private async data(a: Attr, ino: number): Promise<void> {
    let writing: Promise<unknown> = Promise.resolve();
    let which = 0;
    try {
      for (let at = 0; at < a.size; at += PIECE) {
        const length = Math.min(PIECE, a.size - at);
        for (const run of joined(await this.src.dataRuns(a.ino, at, length))) {
          // The buffer read into now was last written from two pieces ago: that write is done.
          const buf = this.buffers[which]!;
          which ^= 1;
          const bytes = await this.src.read(a.ino, run.offset, run.length, buf);
          await writing;
          writing = this.to.change((fs) => fs.write(ino, run.offset, bytes, SUPERUSER));
          writing.catch(() => undefined);
          this.counts.bytes += bytes.length;
        }
        this.covered += length;
        this.onBytes(this.covered);
      }
    } finally {
      await writing;
    }
  }
}

/**
 * Removes `name` from directory `parent` of the target, and everything below it if it is a
 * directory, deepest first; ENOENT if there is no such name.
 */
export async function removeTree(to: Target, parent: number, name: Name): Promise<void> {
  const a = await to.fs.lookup(parent, name);
  if (isDir(a.mode)) {
    // Each page is read afresh from the start: removing names moves the ones after them.
    for (;;) {
      const page: Buffer[] = [];
      for await (const e of entries(to.fs, a.ino)) {
        page.push(e.name);
        if (page.length === 1024) break;
      }
      if (page.length === 0) break;
      for (const n of page) await removeTree(to, a.ino, n);
    }
  }
  // The name is forgotten in the same step: no FUSE operation may find it as it was.
  await to.change(async (fs) => {
    await (isDir(a.mode) ? fs.rmdir(parent, name) : fs.unlink(parent, name));
    to.forget(parent, name);
    to.changed(a.ino);
  });
}
