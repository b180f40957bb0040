// The provider seam: what actually holds a volume's I/O and makes, or deletes, its snapshot.
// An interface only; the protocol never reaches past it into the store or the filesystem.

/** What takes the snapshot of one volume. */
export interface Provider {
  /**
   * Stops admitting mutating operations (reads go on), waits for those in flight, and flushes
   * the filesystem and the store. Resolves once the volume is quiet and on disk.
   */
  hold(): Promise<void>;
  /** Creates the snapshot of the held volume; it is durable when the promise resolves. */
  commit(opts: { name?: string; setId: string }): Promise<{ id: number; gmt: string }>;
  /** Lets held operations go. Idempotent; called while `hold` is pending, it cancels the hold. */
  release(): void;
  /** Deletes snapshot `id`. */
  discard(id: number): Promise<void>;
}
