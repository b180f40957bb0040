// Restores under way, recorded in the store (`restoring.json`) before their temporary copy is
// made, so that after a crash the next mount removes what they left. It removes nothing else.

import { readFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import { Mutex, NodeHostFs, replaceFileAtomically } from "../cow/index.js";

/** Where a restore's copy is built: a directory of production and the copy's name in it. */
export interface PendingCopy {
  dir: number;
  temp: string;
}

const recordPath = (store: string) => join(store, "restoring.json");

export class PendingRestores {
  /** Guarded by `saving`: each change is written out before the next one is made. */
  private readonly pending = new Map<string, PendingCopy>();
  private readonly saving = new Mutex();

  constructor(private readonly store: string) {}

  /** Records `copy` durably; its first byte may be written once this resolves. */
  add(copy: PendingCopy): Promise<void> {
    return this.saving.run(() => {
      this.pending.set(copy.temp, copy);
      return this.save();
    });
  }

  /** The copy is renamed into place or removed: forgets it. */
  done(temp: string): Promise<void> {
    return this.saving.run(() => {
      this.pending.delete(temp);
      return this.save();
    });
  }

  private async save(): Promise<void> {
    if (this.pending.size === 0) return clearLeftovers(this.store);
    const body = Buffer.from(JSON.stringify([...this.pending.values()]));
    await replaceFileAtomically(new NodeHostFs(), recordPath(this.store), body);
  }
}

/** The copies that restores cut short by a crash left, as recorded; none when there is no record. */
export async function leftoverCopies(store: string): Promise<PendingCopy[]> {
  let text: string;
  try {
    text = await readFile(recordPath(store), "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
  try {
    const list = JSON.parse(text) as unknown;
    if (!Array.isArray(list)) return [];
    return list.filter(
      (c): c is PendingCopy =>
        typeof c?.dir === "number" && typeof c?.temp === "string" && !c.temp.includes("/"),
    );
  } catch {
    return []; // cut short itself: replaced atomically, so only a foreign file gets here
  }
}

/** Forgets the record once its leftovers are gone. */
export async function clearLeftovers(store: string): Promise<void> {
  await unlink(recordPath(store)).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== "ENOENT") throw e;
  });
}
