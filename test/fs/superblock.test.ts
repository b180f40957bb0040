// The superblock: what mkfs lays out fits the device without overlap, survives a round trip, and
// anything damaged, foreign or newer is refused with a clear error.

import { describe, expect, it } from "vitest";
import {
  BLOCK_SIZE,
  decodeSuperblock,
  encodeSuperblock,
  geometry,
  newSuperblock,
} from "../../src/fs/superblock.js";

describe("superblock", () => {
  it.each([64 + 1 + 1 + 1 + 16, 1 << 15, 1 << 18, 1 << 24, 1 << 28])(
    "lays out %i blocks: superblock, journal, bitmap, data, in order and without overlap",
    (total) => {
      const g = geometry(total);
      expect(g.journal.start).toBe(1);
      expect(g.bitmap.start).toBe(g.journal.start + g.journal.blocks);
      expect(g.systemBlock).toBe(g.bitmap.start + g.bitmap.blocks);
      expect(g.dataStart).toBe(g.systemBlock + 1);
      expect(g.bitmap.blocks * BLOCK_SIZE * 8).toBeGreaterThanOrEqual(total);
      expect(g.journal.blocks).toBeGreaterThanOrEqual(64);
      expect(g.journal.blocks).toBeLessThanOrEqual(8192);
      expect(g.dataStart).toBeLessThan(total);
    },
  );

  it("refuses a device too small to hold a filesystem", () => {
    expect(() => geometry(40)).toThrow(/EINVAL.*too small/);
  });

  it("reads back what it wrote", () => {
    const sb = newSuperblock(1 << 20);
    expect(decodeSuperblock(encodeSuperblock(sb), 1 << 20)).toEqual(sb);
  });

  it("refuses damage, a foreign block, a newer version and a device that shrank", () => {
    const sb = newSuperblock(1 << 16);
    const good = encodeSuperblock(sb);
    const flipped = Buffer.from(good);
    flipped[20]! ^= 1;
    expect(() => decodeSuperblock(flipped, 1 << 16)).toThrow(/superblock: checksum mismatch/);
    expect(() => decodeSuperblock(Buffer.alloc(BLOCK_SIZE), 1 << 16)).toThrow(/bad magic/);
    expect(() => decodeSuperblock(encodeSuperblock({ ...sb, version: 7 }), 1 << 16)).toThrow(
      /version 7 is newer/,
    );
    expect(() => decodeSuperblock(good, 1 << 15)).toThrow(/but the device has/);
    const moved = encodeSuperblock({ ...sb, dataStart: sb.dataStart + 1 });
    expect(() => decodeSuperblock(moved, 1 << 16)).toThrow(/geometry/);
  });
});
