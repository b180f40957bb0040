// The space policy under the shadow storage limit: finds room for more diff area by having the
// oldest snapshots evicted (VSS) or refuses with ENOSPC. It never evicts a snapshot a revert needs.

import { enospc } from "../errors.js";
import type { OnFull } from "./volume-options.js";

/** What the policy reads and whom it asks; the volume provides them. */
export interface ShadowStorageParts {
  /** The limit in bytes (0: none) and what to do when it is reached; read at each decision. */
  settings(): { shadowStorageLimit: number; onFull: OnFull };
  /** The oldest snapshot, or undefined when there is none. */
  oldest(): number | undefined;
  /** Bytes all diff areas use, plus what writes in progress were promised. */
  used(): number;
  /** Deletes the oldest snapshot, recording and logging why. */
  evictOldest(reason: string): Promise<void>;
}

export class ShadowStorage {
  /**
   * While a revert runs: snapshots from this id on may not be evicted. Guarded by the volume gate
   * held exclusive (set and cleared by the revert; read by evictions in its writes).
   */
  private protectedFrom = Number.POSITIVE_INFINITY;

  constructor(private readonly parts: ShadowStorageParts) {}

  /**
   * Makes room for `bytes` more of diff area under the shadow storage limit: has the oldest
   * snapshots deleted (never one a running revert needs) or, with onFull = fail-writes, throws
   * ENOSPC naming `what`. Returns false when no snapshot is left, so nothing needs preserving.
   */
  async makeRoom(bytes: number, what: string): Promise<boolean> {
    for (;;) {
      const { shadowStorageLimit: limit, onFull } = this.parts.settings();
      const oldest = this.parts.oldest();
      if (oldest === undefined) return false;
      if (limit === 0) return true;
      const used = this.parts.used();
      if (used + bytes <= limit) return true;
      if (onFull === "fail-writes" || oldest >= this.protectedFrom) {
        throw enospc(
          `${what}: shadow storage limit reached (${used} of ${limit} bytes used); delete snapshots or raise the limit`,
        );
      }
      await this.parts.evictOldest(
        `shadow storage limit of ${limit} bytes reached (${used} used, ${bytes} more needed)`,
      );
    }
  }

  /** Runs `fn` with snapshot `id` and newer ones safe from eviction. */
  async protecting<T>(id: number, fn: () => Promise<T>): Promise<T> {
    this.protectedFrom = id;
    try {
      return await fn();
    } finally {
      this.protectedFrom = Number.POSITIVE_INFINITY;
    }
  }
}
