// The chunk store over the diff areas' host files (diff/<id>.data and .index, docs/format.md):
// the chain, lookups and batches. It never decides when to copy or what to evict, nor writes the catalog.

import { join } from "node:path";
import { enoent } from "../errors.js";
import type { ChunkStore, Original, Run, Written } from "./chunk-store.js";
import { type Batch, DiffArea, dataPath, indexPath } from "./diff-area.js";
import { RECORD_SIZE, ZERO_SLOT } from "./format.js";
import type { HostFs } from "./host.js";

/** A batch written to an area's data file, to be published in its index. */
interface FileWritten extends Written {
  batch: Batch;
}

/** How to open one area of the catalog's chain (see `DiffArea.load`). */
export interface AreaToOpen {
  id: number;
  /** Records the catalog says are committed. */
  committed: number;
  /** Records past the committed ones are an interrupted merge (a frozen area). */
  exact: boolean;
}

export class FileChunkStore implements ChunkStore {
  readonly chunkCost: number;
  readonly batchCost = RECORD_SIZE;
  /**
   * The chain, oldest first, and its ids. Changed by administration under the volume gate held
   * exclusive, and by an eviction inside a write under the gate shared: it changes only in
   * synchronous steps, so that no caller sees it half-changed, and no caller keeps it across an await.
   */
  private chain: DiffArea[] = [];
  private chainIds: readonly number[] = [];
  /** Every area not dropped, in the chain or detached. Changed in the same steps as the chain. */
  private readonly areas = new Map<number, DiffArea>();

  private constructor(
    private readonly host: HostFs,
    private readonly dir: string,
    readonly chunkSize: number,
  ) {
    this.chunkCost = chunkSize + RECORD_SIZE;
  }

  /** A store with no area (a volume without snapshots, or one whose areas come by `add`). */
  static empty(host: HostFs, dir: string, chunkSize: number): FileChunkStore {
    return new FileChunkStore(host, dir, chunkSize);
  }

  /**
   * Opens the areas of the catalog's chain, oldest first, recovering each (`DiffArea.load`);
   * refuses damage with CorruptStoreError, closing what it opened. Returns the records dropped.
   */
  static async open(
    host: HostFs,
    dir: string,
    opts: { chunkSize: number; chunkCount: number; readOnly: boolean },
    chain: readonly AreaToOpen[],
  ): Promise<{ store: FileChunkStore; dropped: number }> {
    const store = new FileChunkStore(host, dir, opts.chunkSize);
    let dropped = 0;
    try {
      for (const { id, committed, exact } of chain) {
        const loaded = await DiffArea.load(host, dir, id, { ...opts, committed, exact });
        dropped += loaded.dropped;
        store.attach(loaded.area);
      }
    } catch (e) {
      await store.close();
      throw e;
    }
    return { store, dropped };
  }

  /** Removes every file of diff/ that is no area's: what an interrupted create or delete left. */
  async removeStrays(): Promise<string[]> {
    const owned = new Set(this.chainIds.flatMap((id) => [`${id}.data`, `${id}.index`]));
    const removed: string[] = [];
    for (const name of await this.host.readdir(join(this.dir, "diff"))) {
      if (owned.has(name)) continue;
      await this.host.unlink(join(this.dir, "diff", name));
      removed.push(`diff/${name}`);
    }
    if (removed.length > 0) await this.host.syncDir(join(this.dir, "diff"));
    return removed;
  }

  ids(): readonly number[] {
    return this.chainIds;
  }

  newest(): number | undefined {
    return this.chain.at(-1)?.id;
  }

  has(id: number): boolean {
    return this.chain.some((a) => a.id === id);
  }

  holds(id: number, chunk: number): boolean {
    return this.areas.get(id)?.entries.has(chunk) ?? false;
  }

  holdsData(id: number, chunk: number): boolean {
    const slot = this.areas.get(id)?.entries.get(chunk)?.slot;
    return slot !== undefined && slot !== ZERO_SLOT;
  }

  chunks(id: number): number[] {
    return [...this.area(id).entries.keys()].sort((a, b) => a - b);
  }

  chunkCount(id: number): number {
    return this.area(id).entries.size;
  }

  locate(id: number, first: number, last: number): Run[] {
    const pos = this.chain.findIndex((a) => a.id === id);
    if (pos < 0) throw enoent(`snapshot ${id} does not exist`);
    const chain = pos === 0 ? this.chain : this.chain.slice(pos);
    const runs: Run[] = [];
    for (let c = first; c <= last; c++) {
      const area = chain.find((a) => a.entries.has(c))?.id;
      const run = runs.at(-1);
      if (run && run.area === area) run.count++;
      else runs.push({ chunk: c, count: 1, area });
    }
    return runs;
  }

  hold(id: number): () => void {
    const area = this.area(id);
    area.pin();
    let held = true;
    return () => {
      if (held) area.unpin();
      held = false;
    };
  }

  /** Reads each stretch of consecutive slots with one read, all at once, then verifies. */
  async read(run: Run, target: Buffer): Promise<void> {
    const { chunkSize: cs } = this;
    if (run.area === undefined) throw new Error("a run of the base image is not the store's");
    const area = this.area(run.area);
    const slot = (i: number) => {
      const e = area.entries.get(run.chunk + i);
      if (!e) throw new Error(`chunk ${run.chunk + i} is not in diff area ${area.id}`);
      return e.slot;
    };
    const reads: Promise<void>[] = [];
    for (let i = 0; i < run.count; ) {
      const s0 = slot(i);
      let n = 1;
      while (i + n < run.count && s0 !== ZERO_SLOT && slot(i + n) === s0 + n) n++;
      reads.push(area.readSlots(s0, n, target.subarray(i * cs, (i + n) * cs)));
      i += n;
    }
    await Promise.all(reads);
    for (let i = 0; i < run.count; i++) {
      const c = run.chunk + i;
      area.verify(c, area.entries.get(c)!, target.subarray(i * cs, (i + 1) * cs));
    }
  }

  async write(id: number, originals: ReadonlyArray<Original>): Promise<Written> {
    const batch = await this.area(id).write(originals);
    const w: FileWritten = { area: id, count: originals.length, batch };
    return w;
  }

  publish(w: Written): Promise<void> {
    return this.area(w.area).publish((w as FileWritten).batch);
  }

  bytesUsed(id: number): number {
    return this.area(id).bytesUsed;
  }

  checkpoint(id: number): number {
    return this.area(id).records;
  }

  async add(id: number): Promise<void> {
    if (this.areas.has(id) || id <= (this.newest() ?? 0))
      throw new Error(`diff area ${id} is not newer than the chain's`);
    this.attach(await DiffArea.create(this.host, this.dir, id, this.chunkSize));
  }

  detach(id: number): void {
    this.chain = this.chain.filter((a) => a.id !== id);
    this.chainIds = this.chain.map((a) => a.id);
  }

  async drop(id: number): Promise<void> {
    const area = this.area(id);
    if (this.has(id)) throw new Error(`diff area ${id} is still in the chain`);
    await area.close(); // once no hold remains: a held area stays reachable until then
    this.areas.delete(id);
    await this.host.unlink(dataPath(this.dir, id));
    await this.host.unlink(indexPath(this.dir, id));
    await this.host.syncDir(join(this.dir, "diff"));
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.areas.values()].map((a) => a.close()));
    this.areas.clear();
    this.chain = [];
    this.chainIds = [];
  }

  private attach(area: DiffArea): void {
    this.areas.set(area.id, area);
    this.chain = [...this.chain, area];
    this.chainIds = this.chain.map((a) => a.id);
  }

  private area(id: number): DiffArea {
    const a = this.areas.get(id);
    if (!a) throw new Error(`no diff area ${id}`);
    return a;
  }
}
