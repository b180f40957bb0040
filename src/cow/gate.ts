// Locks for async work: a readers/writer gate (I/O shared, administration exclusive and served
// first), a mutex, and holds of reads in flight. They never know what they guard.

export class Gate {
  private shared = 0;
  private exclusive = false;
  private readonly waiting: Array<{ exclusive: boolean; go: () => void }> = [];

  /** Requests waiting to enter (changes held while the gate is closed, say). */
  get queued(): number {
    return this.waiting.length;
  }

  async withShared<T>(fn: () => Promise<T>): Promise<T> {
    if (this.exclusive || this.waiting.length > 0) {
      await new Promise<void>((go) => this.waiting.push({ exclusive: false, go }));
    } else {
      this.shared++;
    }
    try {
      return await fn();
    } finally {
      this.shared--;
      this.wake();
    }
  }

  /**
   * Enters shared at once, if nothing holds or waits for the gate exclusive, and leaves when
   * `lease` is released; returns false (and enters not) otherwise. It never waits, so a lease
   * may be held by whoever holds other locks.
   */
  tryShared(lease: Lease): boolean {
    if (this.exclusive || this.waiting.length > 0) return false;
    this.shared++;
    void lease.released.then(() => {
      this.shared--;
      this.wake();
    });
    return true;
  }

  async withExclusive<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.close();
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /**
   * Waits until no shared work runs and holds the gate closed (new shared work waits) until the
   * returned function is called; calling it again does nothing.
   */
  async close(): Promise<() => void> {
    if (this.exclusive || this.shared > 0 || this.waiting.length > 0) {
      await new Promise<void>((go) => this.waiting.push({ exclusive: true, go }));
    } else {
      this.exclusive = true;
    }
    let open = false;
    return () => {
      if (open) return;
      open = true;
      this.exclusive = false;
      this.wake();
    };
  }

  private wake(): void {
    if (this.exclusive) return;
    while (this.waiting.length > 0) {
      const next = this.waiting[0]!;
      if (next.exclusive) {
        if (this.shared > 0) return;
        this.waiting.shift();
        this.exclusive = true;
        next.go();
        return;
      }
      this.waiting.shift();
      this.shared++;
      next.go();
    }
  }
}

/** Runs async sections one at a time, in call order. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn, fn);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

/**
 * Reads in flight of a range that a writer must let finish before it overwrites the range (snapshot
 * reads of the base image, before a batch writes over the chunks they chose the base for).
 */
export class ReadHolds {
  /** Guarded by its users' lock (the volume gate, shared); changed in synchronous steps only. */
  private readonly reads = new Set<Promise<void>>();

  /** Holds until `until` settles. */
  add(until: Promise<void>): void {
    this.reads.add(until);
    const done = () => this.reads.delete(until);
    until.then(done, done);
  }

  /** Settles once every read held now has; rejects if one of them does. */
  async settled(): Promise<void> {
    await Promise.all([...this.reads]);
  }
}

/**
 * A hold lent to a reader that finishes elsewhere (a FUSE worker thread reading lent bytes from a
 * host file): what was held for it is let go when `release` is called. Releasing twice does
 * nothing more.
 */
export class Lease {
  private end!: () => void;
  /** Settles once the lease is released: for those who must wait for that. */
  readonly released: Promise<void> = new Promise((resolve) => {
    this.end = resolve;
  });

  release(): void {
    this.end();
  }
}
