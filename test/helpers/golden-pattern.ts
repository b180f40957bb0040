// The golden store's recipe: settings, the write plan and the byte pattern, shared by
// scripts/make-golden-store.ts and test/cow/golden.test.ts. It computes bytes; it never touches a store.

/** Where the golden image of format version 1 lives, relative to the repository root. */
export const GOLDEN_DIR = "test/fixtures/golden-store-v1";

export const GOLDEN_SETTINGS = {
  volumeSize: 256 * 1024,
  chunkSize: 4096,
  shadowStorageLimit: 1024 * 1024,
  onFull: "delete-oldest",
} as const;

const K = GOLDEN_SETTINGS.chunkSize;

export type GoldenStep =
  | { op: "write"; gen: number; offset: number; length: number }
  | { op: "snapshot"; name: string; createdAt: number };

/**
 * The plan, applied in order to a fresh store and then closed. Generation g writes in the interval
 * after the g-1th snapshot. Chunks 20, 30, 31 and 50 are zero when first overwritten, so their
 * diff areas hold ZERO_SLOT entries; chunk 20 is preserved twice (zeros, then data).
 */
export const GOLDEN_PLAN: readonly GoldenStep[] = [
  { op: "write", gen: 1, offset: 0, length: 16 * K },
  { op: "write", gen: 1, offset: 40 * K + 1000, length: 5000 },
  { op: "write", gen: 1, offset: 63 * K, length: K },
  { op: "snapshot", name: "monday", createdAt: Date.UTC(2026, 0, 5, 9, 0, 0) },
  { op: "write", gen: 2, offset: 2 * K, length: 4 * K },
  { op: "write", gen: 2, offset: 20 * K + 512, length: 1024 },
  { op: "write", gen: 2, offset: 40 * K + 100, length: 50 },
  { op: "snapshot", name: "tuesday", createdAt: Date.UTC(2026, 0, 6, 9, 0, 0) },
  { op: "write", gen: 3, offset: 3 * K, length: 2 * K },
  { op: "write", gen: 3, offset: 20 * K, length: K },
  { op: "write", gen: 3, offset: 30 * K, length: 2 * K },
  { op: "write", gen: 3, offset: 10 * K + 4000, length: 200 },
  { op: "snapshot", name: "wednesday", createdAt: Date.UTC(2026, 0, 7, 9, 0, 0) },
  { op: "write", gen: 4, offset: 0, length: K },
  { op: "write", gen: 4, offset: 5 * K, length: K },
  { op: "write", gen: 4, offset: 63 * K, length: K },
  { op: "write", gen: 4, offset: 50 * K, length: K },
];

/**
 * The bytes generation `gen` writes at volume offsets [offset, offset + length). Every byte
 * depends on the generation, the offset and the chunk, so a chunk read from the wrong place or
 * the wrong time never matches; a whole chunk of it is never all zeros.
 */
export function goldenPattern(gen: number, offset: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  for (let i = 0; i < length; i++) {
    const pos = offset + i;
    buf[i] = (gen * 67 + (pos % 251) + Math.floor(pos / K) * 13) & 0xff;
  }
  return buf;
}

export interface GoldenSnapshot {
  name: string;
  createdAt: number;
  /** The whole volume as this snapshot reads it. */
  image: Buffer;
  /** Chunks first overwritten while this was the newest snapshot, ascending: its diff area's entries. */
  preserved: number[];
}

/** Replays the plan on plain buffers: what every snapshot and the live volume must read. */
export function goldenModel(): { snapshots: GoldenSnapshot[]; live: Buffer } {
  const live = Buffer.alloc(GOLDEN_SETTINGS.volumeSize);
  const snapshots: GoldenSnapshot[] = [];
  for (const step of GOLDEN_PLAN) {
    if (step.op === "snapshot") {
      snapshots.push({
        name: step.name,
        createdAt: step.createdAt,
        image: Buffer.from(live),
        preserved: [],
      });
      continue;
    }
    const newest = snapshots.at(-1);
    if (newest) {
      const first = Math.floor(step.offset / K);
      const last = Math.floor((step.offset + step.length - 1) / K);
      for (let c = first; c <= last; c++)
        if (!newest.preserved.includes(c)) newest.preserved.push(c);
    }
    goldenPattern(step.gen, step.offset, step.length).copy(live, step.offset);
  }
  for (const s of snapshots) s.preserved.sort((a, b) => a - b);
  return { snapshots, live };
}
