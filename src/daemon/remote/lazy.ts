// A snapshot in object storage read where it lies: each chunk fetched the first time it is read,
// checked against its hash, and kept in a bounded cache directory (by hash, so snapshots and runs
// share it). It never writes to object storage.

import { mkdir, open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { type ChunkEntry, type Manifest, sha256 } from "../../cow/remote-format.js";
import type { ViewSource } from "../../cow/snapshot-device.js";
import { FsError, isFsError } from "../../errors.js";
import { fetchRun, runsOf } from "./download.js";
import type { Remote } from "./repository.js";

/** Chunks, by hash, in files under a directory; the least recently used go past `limit` bytes. */
export class ChunkCache {
  /** Hash → bytes, least recently used first (a Map keeps insertion order). */
  private readonly files = new Map<string, number>();
  private bytes = 0;

  private constructor(
    readonly dir: string,
    readonly limit: number,
  ) {}

  /** The cache in `dir` (made if missing), with what an earlier run left there, oldest first. */
  static async open(dir: string, limit: number): Promise<ChunkCache> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const cache = new ChunkCache(dir, limit);
    const found: Array<{ hash: string; size: number; used: number }> = [];
    for (const name of await readdir(dir)) {
      const p = join(dir, name);
      if (!/^[0-9a-f]{64}$/.test(name)) {
        // A file a killed run was writing.
        if (name.endsWith(".part")) await rm(p, { force: true });
        continue;
      }
      const st = await stat(p);
      found.push({ hash: name, size: st.size, used: st.mtimeMs });
    }
    for (const f of found.sort((a, b) => a.used - b.used)) cache.note(f.hash, f.size);
    await cache.evict();
    return cache;
  }

  get usedBytes(): number {
    return this.bytes;
  }

  private note(hash: string, size: number): void {
    this.bytes += size - (this.files.get(hash) ?? 0);
    this.files.delete(hash);
    this.files.set(hash, size);
  }

  /** The chunk of hash `hash`, if the cache has it whole; a damaged file is dropped. */
  async get(hash: string): Promise<Buffer | undefined> {
    if (!this.files.has(hash)) return undefined;
    const bytes = await readFile(join(this.dir, hash)).catch(() => undefined);
    if (!bytes || sha256(bytes) !== hash) {
      await this.drop(hash);
      return undefined;
    }
    this.note(hash, bytes.length);
    return bytes;
  }

  /** Keeps a chunk (written whole under another name, then renamed). */
  async put(hash: string, bytes: Uint8Array): Promise<void> {
    if (this.files.has(hash) || bytes.length > this.limit) return;
    const part = join(this.dir, `${hash}.${process.pid}.part`);
    const f = await open(part, "w", 0o600);
    try {
      await f.write(bytes);
    } finally {
      await f.close();
    }
    await rename(part, join(this.dir, hash));
    this.note(hash, bytes.length);
    await this.evict();
  }

  private async drop(hash: string): Promise<void> {
    this.bytes -= this.files.get(hash) ?? 0;
    this.files.delete(hash);
    await rm(join(this.dir, hash), { force: true });
  }

  private async evict(): Promise<void> {
    for (const hash of this.files.keys()) {
      if (this.bytes <= this.limit) return;
      await this.drop(hash);
    }
  }
}

/** Bytes fetched from object storage and read from the cache, for reports and tests. */
export interface LazyTraffic {
  fetchedBytes: number;
  requests: number;
  cachedBytes: number;
}

/**
 * Snapshot `m` as a view's source: reads fill from the cache, or fetch the chunks missing
 * (consecutive slots of one pack in one request), check them, and keep them. A chunk the manifest
 * does not hold reads as zeros.
 */
export class RemoteSource implements ViewSource {
  readonly size: number;
  readonly blockSize = 4096;
  readonly traffic: LazyTraffic = { fetchedBytes: 0, requests: 0, cachedBytes: 0 };
  private readonly byChunk: Map<number, ChunkEntry>;
  /** Fetches under way, by chunk: a second reader waits for the first's. */
  private readonly fetching = new Map<number, Promise<Buffer>>();

  constructor(
    private readonly remote: Remote,
    private readonly m: Manifest,
    private readonly cache: ChunkCache,
  ) {
    this.size = m.volumeSize;
    this.byChunk = new Map(m.entries.map((e) => [e.chunk, e]));
  }

  async read(_id: number, offset: number, target: Uint8Array): Promise<void> {
    const cs = this.m.chunkSize;
    const first = Math.floor(offset / cs);
    const last = Math.floor((offset + target.length - 1) / cs);
    const chunks: number[] = [];
    for (let c = first; c <= last; c++) chunks.push(c);
    const missing: ChunkEntry[] = [];
    const have = new Map<number, Buffer | Promise<Buffer>>();
    for (const c of chunks) {
      const e = this.byChunk.get(c);
      if (!e) continue;
      const pending = this.fetching.get(c);
      const cached = pending ?? (await this.cache.get(e.hash));
      if (cached) {
        if (!pending) this.traffic.cachedBytes += cs;
        have.set(c, cached);
      } else missing.push(e);
    }
    for (const run of runsOf(missing)) {
      const fetched = this.fetch(run);
      for (const [i, e] of run.entries()) {
        const one = fetched.then((b) => b.subarray(i * cs, (i + 1) * cs));
        one.catch(() => undefined);
        this.fetching.set(e.chunk, one);
        have.set(e.chunk, one);
      }
      void fetched
        .finally(() => {
          for (const e of run) this.fetching.delete(e.chunk);
        })
        .catch(() => undefined);
    }
    for (const c of chunks) {
      const start = Math.max(offset, c * cs);
      const end = Math.min(offset + target.length, (c + 1) * cs);
      const got = have.get(c);
      const into = target.subarray(start - offset, end - offset);
      if (got === undefined) into.fill(0);
      else into.set((await got).subarray(start - c * cs, end - c * cs));
    }
  }

  /** A run's chunks fetched, checked and cached; a damaged object is an I/O error to readers. */
  private async fetch(run: ChunkEntry[]): Promise<Buffer> {
    const cs = this.m.chunkSize;
    this.traffic.requests++;
    const bytes = await fetchRun(this.remote, run, cs).catch((e: unknown) => {
      throw isFsError(e, "EBADMSG") ? new FsError("EIO", e.message.replace(/^EBADMSG: /, "")) : e;
    });
    this.traffic.fetchedBytes += bytes.length;
    for (const [i, e] of run.entries())
      await this.cache.put(e.hash, bytes.subarray(i * cs, (i + 1) * cs));
    return bytes;
  }

  lend(): undefined {
    return undefined;
  }

  /** A snapshot in object storage is never deleted under its reader. */
  check(): void {}
}
