// The object-storage seam: a flat namespace of immutable objects under one place (an S3 bucket and
// prefix), read whole or by range. It knows nothing of what the objects hold.

import { enoent } from "../errors.js";

export interface ObjectInfo {
  /** The key under the store's place, as given to `put`. */
  key: string;
  size: number;
}

/**
 * Objects are written whole and never changed in place: `put` of a key that exists replaces it
 * with the same bytes (names are content hashes) or is a new manifest. A missing object is an
 * ENOENT error naming it; every other failure says where and what.
 */
export interface ObjectStore {
  /** Where the objects are, for messages: `s3://bucket/prefix`. */
  readonly where: string;
  /** The object's bytes, or a range of them; with `into`, in it (the answer is a view of it). */
  get(key: string, range?: { offset: number; length: number }, into?: Buffer): Promise<Buffer>;
  put(key: string, body: Buffer): Promise<void>;
  /** Every object whose key starts with `prefix`, in key order. */
  list(prefix: string): Promise<ObjectInfo[]>;
  /** Deletes the objects; a missing one is not an error. */
  delete(keys: readonly string[]): Promise<void>;
}

/** Objects kept in memory: a stand-in for tests of what lies above the seam. */
export class MemoryObjectStore implements ObjectStore {
  readonly objects = new Map<string, Buffer>();
  readonly where = "memory:";

  async get(
    key: string,
    range?: { offset: number; length: number },
    into?: Buffer,
  ): Promise<Buffer> {
    const o = this.objects.get(key);
    if (!o) throw enoent(`${this.where}${key}: no such object`);
    const bytes = range ? o.subarray(range.offset, range.offset + range.length) : o;
    if (!into) return Buffer.from(bytes);
    bytes.copy(into);
    return into.subarray(0, bytes.length);
  }

  async put(key: string, body: Buffer): Promise<void> {
    this.objects.set(key, Buffer.from(body));
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    return [...this.objects]
      .filter(([k]) => k.startsWith(prefix))
      .map(([key, o]) => ({ key, size: o.length }))
      .sort((a, b) => (a.key < b.key ? -1 : 1));
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (const k of keys) this.objects.delete(k);
  }
}
