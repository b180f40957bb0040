// The timeline's retention rules over a simulated year and more of hourly snapshots, cleaned up
// after each one as the daemon does: exactly the expected set stays, held and hand-made ones too.

import { describe, expect, it } from "vitest";
import {
  type KeepLimits,
  parseAssignments,
  timelineSettings,
} from "../../src/daemon/properties.js";
import {
  type RetentionCandidate,
  spaceDeletions,
  timelineDeletions,
} from "../../src/daemon/retention.js";

const HOUR = 36e5;
const iso = (t: number) => new Date(t).toISOString();

describe("timeline retention", () => {
  it("keeps the first snapshot of each of the newest hours, days, weeks, months and years", () => {
    const keep: KeepLimits = { hourly: 10, daily: 10, weekly: 4, monthly: 10, yearly: 10 };
    const start = Date.UTC(2025, 0, 1);
    const end = Date.UTC(2026, 2, 15, 23);
    let live: RetentionCandidate[] = [];
    let id = 0;
    const heldAt = Date.UTC(2025, 4, 17, 13); // a Saturday afternoon: no rule keeps it
    const byHandAt = Date.UTC(2025, 7, 9, 10, 30);
    for (let t = start; t <= end; t += HOUR) {
      live.push({ id: ++id, createdAt: t, timeline: true, holds: t === heldAt ? ["audit"] : [] });
      if (t === byHandAt - HOUR / 2)
        live.push({ id: ++id, createdAt: byHandAt, timeline: false, holds: [] });
      const gone = new Set(timelineDeletions(live, keep).map((d) => d.id));
      live = live.filter((s) => !gone.has(s.id));
    }

    // The expected set, from the calendar.
    const want = new Set<string>();
    for (let k = 0; k < 10; k++) want.add(iso(end - k * HOUR)); // hourly
    for (let k = 0; k < 10; k++) want.add(iso(Date.UTC(2026, 2, 15 - k))); // daily
    let monday = Date.UTC(2026, 2, 15);
    while (new Date(monday).getUTCDay() !== 1) monday -= 24 * HOUR;
    for (let k = 0; k < 4; k++) want.add(iso(monday - k * 7 * 24 * HOUR)); // weekly
    for (let k = 0; k < 10; k++) want.add(iso(Date.UTC(2026, 2 - k, 1))); // monthly
    want.add(iso(Date.UTC(2025, 0, 1))); // yearly
    want.add(iso(Date.UTC(2026, 0, 1)));
    want.add(iso(heldAt)); // held
    want.add(iso(byHandAt)); // taken by hand

    expect(live.map((s) => iso(s.createdAt)).sort()).toEqual([...want].sort());
  });

  it("with every limit at 0 keeps only the newest timeline snapshot", () => {
    const keep: KeepLimits = { hourly: 0, daily: 0, weekly: 0, monthly: 0, yearly: 0 };
    const snaps = [1, 2, 3].map((id) => ({ id, createdAt: id * HOUR, timeline: true, holds: [] }));
    expect(timelineDeletions(snaps, keep).map((d) => d.id)).toEqual([1, 2]);
  });

  it("space-aware cleanup deletes the oldest unheld timeline snapshots until under the target", () => {
    const snaps: RetentionCandidate[] = [
      { id: 1, createdAt: 1, timeline: false, holds: [] },
      { id: 2, createdAt: 2, timeline: true, holds: ["x"] },
      { id: 3, createdAt: 3, timeline: true, holds: [] },
      { id: 4, createdAt: 4, timeline: true, holds: [] },
      { id: 5, createdAt: 5, timeline: true, holds: [] },
    ];
    const freed = (id: number) => id * 10;
    expect(spaceDeletions(snaps, 100, 60, freed, "r").map((d) => d.id)).toEqual([3, 4]);
    expect(spaceDeletions(snaps, 100, 0, freed, "r").map((d) => d.id)).toEqual([3, 4]);
    expect(spaceDeletions(snaps, 50, 60, freed, "r")).toEqual([]);
  });
});

describe("properties", () => {
  it("checks every assignment before any applies, in one clear line", () => {
    expect(() => parseAssignments(["keep-hourly=5", "colour=blue"])).toThrow(
      /unknown property "colour"/,
    );
    expect(() => parseAssignments(["timeline-interval=0s"])).toThrow(/duration/);
    expect(() => parseAssignments(["cleanup-free=120%"])).toThrow(/share/);
    expect(() => parseAssignments(["keep-daily=-1"])).toThrow(/whole number/);
    expect(() => parseAssignments(["on-full=panic"])).toThrow(/delete-oldest or fail-writes/);
    expect(() => parseAssignments(["timeline"])).toThrow(/PROPERTY=VALUE/);
    const c = parseAssignments([
      "shadow-storage-limit=2G",
      "timeline=on",
      "timeline-interval=90m",
      "cleanup-free=80%",
    ]);
    expect(c).toEqual({
      limit: 2 * 2 ** 30,
      props: { timeline: "on", "timeline-interval": "90m", "cleanup-free": "80%" },
    });
    expect(timelineSettings(c.props)).toMatchObject({
      enabled: true,
      intervalMs: 90 * 6e4,
      cleanupFree: 0.8,
      keepEmpty: true,
      keep: { hourly: 10, daily: 10, weekly: 0, monthly: 10, yearly: 10 },
    });
  });
});
