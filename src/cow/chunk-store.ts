// The exception store seam (dm-snapshot's dm-exception-store.h): the chain of diff areas where
// preserved originals and their index live. It never decides when to copy, whom to evict or what fits.

/**
 * Part of a snapshot's range served by one source: `count` chunks from `chunk`, read from the diff
 * area of snapshot `area`, or from the base image when `area` is undefined.
 */
export interface Run {
  chunk: number;
  count: number;
  area: number | undefined;
}

/** One original to preserve: the chunk's contents as the snapshot sees them (null: zeros). */
export interface Original {
  chunk: number;
  data: Buffer | null;
}

/** Originals written by `write`, neither durable nor visible yet: what `publish` takes. */
export interface Written {
  /** The snapshot whose area they were written to. */
  readonly area: number;
  readonly count: number;
}

/**
 * An ordered chain of diff areas, one per snapshot, oldest first, each named by its snapshot's id
 * (ids only grow and are never reused). Snapshot S reads chunk c from the first area from S's on
 * that holds c, else from the base image, which the store does not own.
 *
 * Concurrency: the store keeps no lock. Every synchronous method answers for one instant; its
 * callers (the volume, under its gate) decide what may change between two awaits. Areas change
 * only through `add`, `detach`, `drop` and `publish`.
 *
 * Durability: a batch is durable (data and index) before `publish` resolves; the base chunks it
 * protects may be overwritten only after. `add` is durable before it resolves. A crash at any
 * instant leaves every published batch readable after the store is opened again.
 */
export interface ChunkStore {
  readonly chunkSize: number;
  /** The most one preserved chunk adds to an area's usage (its data and its index entry). */
  readonly chunkCost: number;
  /** What one published batch adds to an area's usage besides its chunks. */
  readonly batchCost: number;

  /** Snapshots with an area in the chain, oldest first. Read-only: change it with add/detach. */
  ids(): readonly number[];
  /** The newest snapshot's area, which takes the originals of chunks written now. */
  newest(): number | undefined;
  /** True while snapshot `id`'s area is in the chain. */
  has(id: number): boolean;

  /** True when area `id` holds chunk `chunk` (published); once true, true until `drop`. */
  holds(id: number, chunk: number): boolean;
  /** True when area `id` holds chunk `chunk` with data stored (not a chunk of zeros). */
  holdsData(id: number, chunk: number): boolean;
  /** The chunks area `id` holds, ascending. */
  chunks(id: number): number[];
  /** How many chunks area `id` holds. */
  chunkCount(id: number): number;
  /**
   * Which source serves each chunk of [first, last] for snapshot `id` (in the chain): the longest
   * runs of one source, in order, covering the range. Synchronous: what one instant of the chain
   * says, so that a caller can decide every source before it awaits.
   */
  locate(id: number, first: number, last: number): Run[];

  /**
   * Keeps area `id` readable and writable until the returned function is called, even if it is
   * detached and dropped meanwhile (`drop` waits). Take it in the same synchronous step as the
   * `locate` or `has` that chose the area.
   */
  hold(id: number): () => void;
  /**
   * Reads the `count` chunks of `run`, all held by its area, into `target` (count × chunkSize
   * bytes), verifying each against its checksum (CorruptStoreError, EIO, on a mismatch). The
   * caller holds the area.
   */
  read(run: Run, target: Buffer): Promise<void>;

  /**
   * Writes originals to area `id` (held by the caller), for chunks it does not hold, each once:
   * neither durable nor visible. Keeps no reference to `data` after it resolves. Batches of one
   * area are published in the order they were written; the next may be written while one is
   * being published.
   */
  write(id: number, originals: ReadonlyArray<Original>): Promise<Written>;
  /**
   * Makes a written batch durable (data, then index), then visible to `holds`, `locate`, `read`
   * and usage. Two syncs whatever the number of chunks; none for an empty batch.
   */
  publish(batch: Written): Promise<void>;

  /** Bytes area `id` occupies in the shadow storage; grows only by `publish`. */
  bytesUsed(id: number): number;
  /**
   * What the catalog records for area `id` so that an open can tell committed batches from torn
   * ones (the file store: index records of complete batches, all durable).
   */
  checkpoint(id: number): number;

  /** Appends an empty area for snapshot `id` (newer than every other) as the newest; durable. */
  add(id: number): Promise<void>;
  /**
   * Takes area `id` out of the chain at once: `ids`, `newest`, `has` and `locate` no longer see
   * it. The methods that name an area still reach it, and its data stay, until `drop`.
   */
  detach(id: number): void;
  /** Deletes a detached area's data, once no hold remains; durable. */
  drop(id: number): Promise<void>;
  /** Closes every area not dropped, once no hold remains. The store is not used after. */
  close(): Promise<void>;
}
