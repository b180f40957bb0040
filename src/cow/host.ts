// The host filesystem as the store sees it: a small Env (after LevelDB's) so that tests can
// drop unsynced writes or inject EIO. The store must never touch node:fs outside this seam.

import { constants, writeSync } from "node:fs";
import { type FileHandle, mkdir, open, readdir, rename, stat, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import { DirectIo } from "./direct-file.js";

/** An open host file. Reads see every completed write; only `sync` makes writes durable. */
export interface HostFile {
  /**
   * A descriptor of the file that another thread may read it through, seeing what `read` sees;
   * absent when the file has none (a file of a test host).
   */
  readonly fd?: number;
  /** Reads up to `buf.length` bytes at `position`; bytes past the end read as zeros. Returns bytes read from the file. */
  read(buf: Uint8Array, position: number): Promise<number>;
  /** Writes all of `data` at `position`, extending the file (holes read as zeros). */
  write(data: Uint8Array, position: number): Promise<void>;
  /** Writes the buffers one after the other from `position`, as one write would. */
  writev(chunks: readonly Uint8Array[], position: number): Promise<void>;
  /** Makes every completed write and the file's size durable (fdatasync). */
  sync(): Promise<void>;
  truncate(length: number): Promise<void>;
  size(): Promise<number>;
  close(): Promise<void>;
}

export interface HostFs {
  /**
   * Opens an existing file; `create` makes it (empty) when missing, `exclusive` fails if it
   * exists. `direct` asks that its data bypass the host's page cache where the host allows (it
   * changes no result; for files synced as soon as written and seldom read).
   */
  open(
    path: string,
    opts?: { create?: boolean; exclusive?: boolean; readOnly?: boolean; direct?: boolean },
  ): Promise<HostFile>;
  exists(path: string): Promise<boolean>;
  readdir(dir: string): Promise<string[]>;
  mkdir(dir: string): Promise<void>;
  /** Atomic rename; durable only after `syncDir` of the directory. */
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** Makes the directory's entries (creations, renames, unlinks) durable. */
  syncDir(dir: string): Promise<void>;
}

/**
 * Writes up to this size are made synchronously, on the calling thread. Such a write only copies
 * into the host's page cache; handing it to libuv's thread pool and waiting to be woken cost more
 * than the copy (a 20 KB file write through the filesystem: 122 µs with the thread pool, 26 µs
 * without). Larger writes go to the pool, so the thread stays free meanwhile.
 */
const SYNC_WRITE_MAX = 256 * 1024;

class NodeHostFile implements HostFile {
  /** Present when the file was opened `direct`. */
  private readonly io: DirectIo | undefined;

  constructor(
    private readonly fh: FileHandle,
    direct?: FileHandle,
  ) {
    if (direct) {
      this.io = new DirectIo(direct, {
        read: (buf, position) => this.readBuffered(buf, position),
        writev: (chunks, position) => this.writevBuffered(chunks, position),
      });
    }
  }

  get fd(): number {
    return this.fh.fd;
  }

  read(buf: Uint8Array, position: number): Promise<number> {
    return this.io ? this.io.read(buf, position) : this.readBuffered(buf, position);
  }

  private async readBuffered(buf: Uint8Array, position: number): Promise<number> {
    let done = 0;
    while (done < buf.length) {
      const { bytesRead } = await this.fh.read(buf, done, buf.length - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    buf.fill(0, done);
    return done;
  }

  write(data: Uint8Array, position: number): Promise<void> {
    return this.io ? this.io.writev([data], position) : this.writeBuffered(data, position);
  }

  private async writeBuffered(data: Uint8Array, position: number): Promise<void> {
    let done = 0;
    if (data.length <= SYNC_WRITE_MAX) {
      while (done < data.length)
        done += writeSync(this.fh.fd, data, done, data.length - done, position + done);
      return;
    }
    while (done < data.length) {
      const { bytesWritten } = await this.fh.write(data, done, data.length - done, position + done);
      done += bytesWritten;
    }
  }

  writev(chunks: readonly Uint8Array[], position: number): Promise<void> {
    return this.io ? this.io.writev(chunks, position) : this.writevBuffered(chunks, position);
  }

  private async writevBuffered(chunks: readonly Uint8Array[], position: number): Promise<void> {
    const total = chunks.reduce((n, c) => n + c.length, 0);
    const { bytesWritten } = await this.fh.writev(chunks as Uint8Array[], position);
    if (bytesWritten < total) {
      await this.writeBuffered(
        Buffer.concat(chunks).subarray(bytesWritten),
        position + bytesWritten,
      );
    }
  }

  sync(): Promise<void> {
    return this.fh.datasync();
  }

  truncate(length: number): Promise<void> {
    return this.fh.truncate(length);
  }

  async size(): Promise<number> {
    return (await this.fh.stat()).size;
  }

  async close(): Promise<void> {
    await this.io?.close();
    return this.fh.close();
  }
}

/** The real host filesystem. */
export class NodeHostFs implements HostFs {
  async open(
    path: string,
    opts: { create?: boolean; exclusive?: boolean; readOnly?: boolean; direct?: boolean } = {},
  ): Promise<HostFile> {
    const access = opts.readOnly ? constants.O_RDONLY : constants.O_RDWR;
    let flags = access;
    if (opts.create) flags |= constants.O_CREAT;
    if (opts.exclusive) flags |= constants.O_EXCL;
    const fh = await open(path, flags, 0o600);
    // A host filesystem without O_DIRECT (tmpfs before Linux 6.6) refuses the open: buffered only.
    const direct = opts.direct
      ? await open(path, access | constants.O_DIRECT).catch(() => undefined)
      : undefined;
    return new NodeHostFile(fh, direct);
  }

  async exists(path: string): Promise<boolean> {
    try {
      await stat(path);
      return true;
    } catch {
      return false;
    }
  }

  readdir(dir: string): Promise<string[]> {
    return readdir(dir);
  }

  async mkdir(dir: string): Promise<void> {
    const first = await mkdir(dir, { recursive: true, mode: 0o700 });
    if (first === undefined) return;
    // Each directory made is durable once its parent is synced.
    for (let d = dir; ; d = dirname(d)) {
      await this.syncDir(dirname(d));
      if (d === first) break;
    }
  }

  rename(from: string, to: string): Promise<void> {
    return rename(from, to);
  }

  unlink(path: string): Promise<void> {
    return unlink(path);
  }

  async syncDir(dir: string): Promise<void> {
    const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
}

/** Replaces a small file atomically: write a temporary, sync it, rename over, sync the directory. */
export async function replaceFileAtomically(
  host: HostFs,
  path: string,
  data: Uint8Array,
): Promise<void> {
  const tmp = `${path}.tmp`;
  const f = await host.open(tmp, { create: true });
  try {
    await f.truncate(0);
    await f.write(data, 0);
    await f.sync();
  } finally {
    await f.close();
  }
  await host.rename(tmp, path);
  await host.syncDir(dirname(path));
}

/** Reads a whole (small) file. */
export async function readWholeFile(host: HostFs, path: string): Promise<Buffer> {
  const f = await host.open(path, { readOnly: true });
  try {
    const buf = Buffer.alloc(await f.size());
    await f.read(buf, 0);
    return buf;
  } finally {
    await f.close();
  }
}
