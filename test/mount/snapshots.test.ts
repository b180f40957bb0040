import { describe, expect, it } from "vitest";
import type { BlockDevice, SnapshotInfo } from "../../src/cow/index.js";
import { enoent } from "../../src/errors.js";
import { gmtName } from "../../src/mount/names.js";
import { SnapshotViews } from "../../src/mount/snapshots.js";

/** A store's snapshot list, changed by the test. */
function source() {
  const list: SnapshotInfo[] = [];
  let listed = 0;
  const src = {
    list,
    listed: () => listed,
    snapshots: () => {
      listed++;
      return list.map((s) => ({ ...s }));
    },
    snapshotDevice: (): BlockDevice => {
      throw new Error("not opened here");
    },
    position: (id: number) => {
      const pos = list.findIndex((s) => s.id === id);
      if (pos < 0) throw enoent(`snapshot ${id} does not exist`);
      return pos;
    },
  };
  return src;
}

const snap = (id: number, second: number, name?: string): SnapshotInfo => ({
  id,
  guid: `volume:${id}`,
  name,
  setId: undefined,
  createdAt: Date.UTC(2026, 0, 2, 3, 4, second),
  diffAreaBytes: 0,
  holds: [],
  timeline: false,
});

describe("snapshot directory names", () => {
  it("resolve by @GMT name and alias, and follow deletes and new snapshots", () => {
    const src = source();
    const views = new SnapshotViews(src);
    src.list.push(snap(1, 5, "alpha"), snap(2, 6));
    const [a, b] = [gmtName(src.list[0]!.createdAt), gmtName(src.list[1]!.createdAt)];
    expect(views.find(a)?.id).toBe(1);
    expect(views.find("alpha")?.id).toBe(1);
    expect(views.find(b)?.id).toBe(2);
    expect(views.find("nosuch")).toBeUndefined();

    // Deleted: neither name resolves, even though both were found before.
    src.list.shift();
    expect(views.find("alpha")).toBeUndefined();
    expect(views.find(a)).toBeUndefined();
    expect(views.find(b)?.id).toBe(2);

    // A new snapshot takes the alias (and, its clock having gone back, the old @GMT name).
    src.list.push(snap(3, 5, "alpha"));
    expect(views.find("alpha")?.id).toBe(3);
    expect(views.find(a)?.id).toBe(3);
  });

  it("a known name is found without listing every snapshot again", () => {
    const src = source();
    const views = new SnapshotViews(src);
    for (let i = 1; i <= 64; i++) src.list.push(snap(i, i % 60, `s${i}`));
    const name = gmtName(src.list[40]!.createdAt);
    expect(views.find(name)?.id).toBe(41);
    const listed = src.listed();
    for (let i = 0; i < 100; i++) expect(views.find(name)?.id).toBe(41);
    expect(views.find("s7")?.id).toBe(7);
    expect(src.listed()).toBe(listed);
  });
});
