// The requester's side of the protocol: one snapshot set across participants, all or nothing.
// It never returns or throws while a writer it froze is still frozen or a volume is still held.

import { randomUUID } from "node:crypto";
import { type ErrnoCode, FsError, isFsError } from "../errors.js";
import type { LaterEvent, Participant, SnapshotMade } from "./participant.js";
import type { WriterInfo, WriterResult } from "./writer.js";

export interface SnapshotOptions {
  /** A user-given name for the snapshots. */
  name?: string;
  /** From the first freeze to the last thaw answer, at most this (default 60000 ms). */
  freezeLimitMs?: number;
  /** Hold and commit on every volume, at most this (default 10000 ms). */
  holdLimitMs?: number;
  /** The set's id; a random uuid by default. */
  setId?: string;
}

/** Everything one run of the protocol did, whether it succeeded or not. */
export interface SnapshotRun {
  setId: string;
  name: string | null;
  /** When the run started (ISO 8601). */
  startedAt: string;
  writers: Array<WriterInfo & { volume: string }>;
  /** The snapshots that exist after the run: one per volume, or none. */
  snapshots: SnapshotMade[];
  /** Snapshots committed and then deleted because the run failed. */
  discarded: SnapshotMade[];
  /** From the first hold to the last release; null when no volume was held. */
  holdMs: number | null;
  /** Every writer's answer to every event, in the order they came. */
  events: WriterResult[];
  result: "ok" | "failed";
  /** Why the run failed (the ProtocolError's message without its code). */
  reason?: string;
}

/** A snapshot set that failed: nothing of it is kept, and `reason` says why in one line. */
export class ProtocolError extends FsError {
  constructor(
    code: ErrnoCode,
    readonly reason: string,
    readonly record: SnapshotRun,
  ) {
    super(code, reason);
    this.name = "ProtocolError";
  }
}

class Failure extends Error {
  constructor(
    readonly code: ErrnoCode,
    message: string,
  ) {
    super(message);
  }
}

/** How long a participant may be late past the freeze limit before it is given up on. */
const STRAGGLER_GRACE_MS = 2000;

export async function takeSnapshot(
  participants: Participant[],
  opts: SnapshotOptions = {},
): Promise<SnapshotRun> {
  if (participants.length === 0) throw new FsError("EINVAL", "a snapshot needs a volume");
  const setId = opts.setId ?? randomUUID();
  const freezeLimitMs = opts.freezeLimitMs ?? 60_000;
  const holdLimitMs = opts.holdLimitMs ?? 10_000;
  const run: SnapshotRun = {
    setId,
    name: opts.name ?? null,
    startedAt: new Date().toISOString(),
    writers: [],
    snapshots: [],
    discarded: [],
    holdMs: null,
    events: [],
    result: "failed",
  };
  let holdStart: number | null = null;
  const vetoWord = (event: string) => (event === "prepare" ? "vetoed" : "failed");

  /** Runs `step` on every participant at once; a participant's throw becomes a Failure. */
  const all = async <T>(
    step: string,
    fn: (p: Participant) => Promise<T>,
    done = new Set<Participant>(),
  ): Promise<T[]> => {
    const settled = await Promise.allSettled(
      participants.map(async (p) => {
        const v = await fn(p);
        done.add(p);
        return v;
      }),
    );
    return settled.map((s, i) => {
      if (s.status === "fulfilled") return s.value;
      const e = s.reason as unknown;
      const code = isFsError(e) ? e.code : "EIO";
      const msg = e instanceof Error ? e.message : String(e);
      throw new Failure(code, `${participants[i]?.volume} failed ${step}: ${msg}`);
    });
  };
  /** Records writer results; the first failure stops the run. */
  const check = (results: WriterResult[], deadline?: number) => {
    run.events.push(...results);
    const bad = results.find((r) => !r.ok);
    if (!bad) return;
    const late = deadline !== undefined && bad.at + bad.ms >= deadline;
    throw new Failure(
      late ? "ETIMEDOUT" : "ECANCELED",
      `writer "${bad.writer}" on ${bad.volume} ${vetoWord(bad.event)} ${bad.event}: ${bad.reason}` +
        (late ? ` (freeze limit ${freezeLimitMs} ms)` : ""),
    );
  };
  const event = (e: LaterEvent, deadline?: number, done?: Set<Participant>) =>
    all(e, (p) => p.event(e, { setId, deadline }), done).then((r) => r.flat());

  try {
    const identified = await all("identify", async (p) => {
      const { writers, results } = await p.identify(setId);
      run.writers.push(...writers.map((w) => ({ ...w, volume: p.volume })));
      return results;
    });
    check(identified.flat());
    check(await event("prepare"));

    const deadline = Date.now() + freezeLimitMs;
    const pastFreezeLimit = (what: string) =>
      new Failure("ETIMEDOUT", `${what} within the freeze limit of ${freezeLimitMs} ms`);
    const frozen = new Set<Participant>();
    check(
      await within(
        event("freeze", deadline, frozen),
        deadline + STRAGGLER_GRACE_MS - Date.now(),
        () => pastFreezeLimit(`${late(participants, frozen)} did not finish freeze`),
      ),
      deadline,
    );

    holdStart = Date.now();
    const committed = new Set<Participant>();
    const holdDeadline = Math.min(deadline, holdStart + holdLimitMs);
    run.snapshots = await within(
      all(
        "hold and commit",
        async (p) => {
          await p.hold();
          return p.commit({ ...(opts.name ? { name: opts.name } : {}), setId });
        },
        committed,
      ),
      holdDeadline - Date.now(),
      () =>
        holdDeadline === deadline && deadline - holdStart! < holdLimitMs
          ? pastFreezeLimit(`${late(participants, committed)} did not hold and commit`)
          : new Failure(
              "ETIMEDOUT",
              `${late(participants, committed)} did not hold and commit within the hold limit of ${holdLimitMs} ms`,
            ),
    );
    await all("release", (p) => p.release());
    run.holdMs = Date.now() - holdStart;
    holdStart = null;

    const thawing = new Set<Participant>();
    const thawed = await within(
      event("thaw", undefined, thawing),
      deadline + STRAGGLER_GRACE_MS - Date.now(),
      () => pastFreezeLimit(`${late(participants, thawing)} did not finish thaw`),
    );
    check(thawed);
    const lateThaw = thawed.find((r) => r.at + r.ms > deadline);
    if (lateThaw)
      throw new Failure(
        "ETIMEDOUT",
        `writer "${lateThaw.writer}" on ${lateThaw.volume} answered thaw ` +
          `${lateThaw.at + lateThaw.ms - (deadline - freezeLimitMs)} ms after the first freeze, ` +
          `past the freeze limit of ${freezeLimitMs} ms`,
      );

    check(await event("post-snapshot"));
    await all("finish", (p) => p.finish());
    run.result = "ok";
    return run;
  } catch (e) {
    const failure =
      e instanceof Failure ? e : new Failure("EIO", e instanceof Error ? e.message : String(e));
    // Abandon: every participant thaws its frozen writers, releases its hold and deletes
    // the snapshot it committed.
    const reports = await Promise.allSettled(participants.map((p) => p.abort(failure.message)));
    if (holdStart !== null) run.holdMs = Date.now() - holdStart;
    const problems: string[] = [];
    reports.forEach((r, i) => {
      if (r.status === "rejected") {
        problems.push(`${participants[i]?.volume} could not abort: ${String(r.reason)}`);
        return;
      }
      run.events.push(...r.value.thawed);
      if (r.value.discarded) run.discarded.push(r.value.discarded);
      problems.push(...r.value.problems);
    });
    run.snapshots = [];
    run.result = "failed";
    run.reason = [failure.message, ...problems].join("; ");
    throw new ProtocolError(failure.code, run.reason, run);
  }
}

/** Names the participants not in `done` (the volumes still working on a step). */
function late(participants: Participant[], done: Set<Participant>): string {
  const names = participants.filter((p) => !done.has(p)).map((p) => p.volume);
  return names.length === 1 ? `volume ${names[0]}` : `volumes ${names.join(", ")}`;
}

/** `p`, unless `ms` pass first: then the failure `late` makes (p's outcome is ignored). */
async function within<T>(p: Promise<T>, ms: number, late: () => Failure): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(late()), Math.max(0, ms));
  });
  p.catch(() => undefined);
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
