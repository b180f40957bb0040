// The retention rules of the timeline, as snapper's timeline cleanup has them: which timeline
// snapshots to keep and why. Pure: it deletes nothing and reads no clock.

import type { KeepLimits } from "./properties.js";

export interface RetentionCandidate {
  id: number;
  createdAt: number;
  timeline: boolean;
  holds: readonly string[];
}

export interface Deletion {
  id: number;
  /** The rule that chose it. */
  rule: string;
}

const HOUR = 36e5;
const DAY = 864e5;

/** The period a time falls in, per kind (UTC; weeks start on Monday, as ISO 8601's). */
const PERIODS: ReadonlyArray<[keyof KeepLimits, (t: number) => number]> = [
  ["hourly", (t) => Math.floor(t / HOUR)],
  ["daily", (t) => Math.floor(t / DAY)],
  // 1970-01-01 was a Thursday: three days on, weeks turn on Mondays.
  ["weekly", (t) => Math.floor((Math.floor(t / DAY) + 3) / 7)],
  [
    "monthly",
    (t) => {
      const d = new Date(t);
      return d.getUTCFullYear() * 12 + d.getUTCMonth();
    },
  ],
  ["yearly", (t) => new Date(t).getUTCFullYear()],
];

/**
 * The timeline snapshots the limits do not keep. Per kind, the first (oldest) timeline snapshot
 * of each period stands for it, and those of the newest `keep[kind]` periods are kept; the newest
 * timeline snapshot is always kept; a held snapshot is never chosen; snapshots taken by hand are
 * not the timeline's to delete.
 */
export function timelineDeletions(
  snapshots: readonly RetentionCandidate[],
  keep: KeepLimits,
): Deletion[] {
  const timeline = snapshots.filter((s) => s.timeline).sort((a, b) => a.createdAt - b.createdAt);
  const kept = new Set<number>();
  const newest = timeline.at(-1);
  if (newest) kept.add(newest.id);
  for (const [kind, period] of PERIODS) {
    let left = keep[kind];
    // Newest first: a snapshot is the first of its period when the one before it is not in it.
    for (let i = timeline.length - 1; i >= 0 && left > 0; i--) {
      const p = period(timeline[i]!.createdAt);
      if (i > 0 && period(timeline[i - 1]!.createdAt) === p) continue;
      kept.add(timeline[i]!.id);
      left--;
    }
  }
  const limits = `keep-hourly=${keep.hourly} keep-daily=${keep.daily} keep-weekly=${keep.weekly} keep-monthly=${keep.monthly} keep-yearly=${keep.yearly}`;
  return timeline
    .filter((s) => !kept.has(s.id) && s.holds.length === 0)
    .map((s) => ({ id: s.id, rule: `timeline limits (${limits})` }));
}

/**
 * The timeline snapshots space-aware cleanup deletes, oldest first, until shadow storage used is
 * at most `target` bytes: `freed(id)` says what deleting each would free. Never a held one, nor
 * the newest timeline snapshot.
 */
export function spaceDeletions(
  snapshots: readonly RetentionCandidate[],
  used: number,
  target: number,
  freed: (id: number) => number,
  rule: string,
): Deletion[] {
  const timeline = snapshots.filter((s) => s.timeline).sort((a, b) => a.createdAt - b.createdAt);
  const out: Deletion[] = [];
  for (const s of timeline.slice(0, -1)) {
    if (used <= target) break;
    if (s.holds.length > 0) continue;
    out.push({ id: s.id, rule });
    used -= freed(s.id);
  }
  return out;
}
