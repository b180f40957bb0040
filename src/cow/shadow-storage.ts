// The space policy under the shadow storage limit: finds room for more diff area by having
// unheld snapshots evicted, oldest first (VSS), or refuses with ENOSPC. It never evicts a held
// snapshot, nor one a running revert needs.

import { enospc } from "../errors.js";
import { Mutex } from "./gate.js";
import type { OnFull } from "./volume-options.js";

/** What the policy reads and whom it asks; the volume provides them. */
export interface ShadowStorageParts {
  /** The limit in bytes (0: none) and what to do when it is reached; read at each decision. */
  settings(): { shadowStorageLimit: number; onFull: OnFull };
  /** Snapshots in the chain, oldest first. */
  ids(): readonly number[];
  /** The holds on snapshot `id` (none: it may be evicted). */
  holdsOn(id: number): readonly string[];
  /** What deleting snapshot `id` alone frees. */
  exclusiveBytes(id: number): number;
  /** Bytes all diff areas use, plus what writes in progress were promised. */
  used(): number;
  /** Deletes snapshot `id`, recording and logging why. */
  evict(id: number, reason: string): Promise<void>;
  /** Logs a write refused because only held snapshots could make room. */
  refused(fields: object, message: string): void;
}

export class ShadowStorage {
  /**
   * While a revert runs: snapshots from this id on may not be evicted. Guarded by the volume gate
   * held exclusive (set and cleared by the revert; read by evictions in its writes).
   */
  private protectedFrom = Number.POSITIVE_INFINITY;
  /** One eviction at a time: an eviction that merges awaits before its snapshot leaves the chain. */
  private readonly evicting = new Mutex();

  constructor(private readonly parts: ShadowStorageParts) {}

  /**
   * Makes room for `bytes` more of diff area under the shadow storage limit: has unheld snapshots
   * deleted (see `victim`) or, with onFull = fail-writes or when none is left to delete, throws
   * ENOSPC naming `what`. Returns false when no snapshot is left, so nothing needs preserving.
   */
  async makeRoom(bytes: number, what: string): Promise<boolean> {
    for (;;) {
      const { shadowStorageLimit: limit, onFull } = this.parts.settings();
      if (this.parts.ids().length === 0) return false;
      if (limit === 0 || this.parts.used() + bytes <= limit) return true;
      await this.evicting.run(async () => {
        const used = this.parts.used();
        if (this.parts.ids().length === 0 || used + bytes <= limit) return;
        const full = `${what}: shadow storage limit reached (${used} of ${limit} bytes used)`;
        if (onFull === "fail-writes") {
          throw enospc(`${full}; delete snapshots or raise the limit`);
        }
        const id = this.victim();
        const held = this.parts.ids().filter((s) => this.parts.holdsOn(s).length > 0);
        if (id === undefined && held.length === 0) {
          throw enospc(`${full}; delete snapshots or raise the limit`);
        }
        if (id === undefined) {
          this.parts.refused(
            { held, used, limit, needed: bytes },
            "write refused: only held snapshots could make room",
          );
          throw enospc(
            `${full}; only held snapshots (ids ${held.join(", ")}) could make room: release one or raise the limit`,
          );
        }
        await this.parts.evict(
          id,
          `shadow storage limit of ${limit} bytes reached (${used} used, ${bytes} more needed)`,
        );
      });
    }
  }

  /**
   * The snapshot an eviction deletes: the oldest one without a hold, if that is the oldest of
   * all (its whole diff area goes), or else if deleting it frees anything and it is not the newest
   * (whose area writes in flight are still filling, so it cannot be merged away under them);
   * never one a revert needs.
   */
  private victim(): number | undefined {
    const ids = this.parts.ids();
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (id >= this.protectedFrom) return undefined;
      if (this.parts.holdsOn(id).length > 0) continue;
      if (i === 0) return id;
      if (i < ids.length - 1 && this.parts.exclusiveBytes(id) > 0) return id;
    }
    return undefined;
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
