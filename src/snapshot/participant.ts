// One volume's side of a snapshot: its writers, its provider, and its own limits on freeze and hold.
// It never leaves a writer frozen, a volume held, or an unconfirmed snapshot behind once aborted.

import { FsError } from "../errors.js";
import type { Provider } from "./provider.js";
import {
  byName,
  type EventContext,
  reasonOf,
  type Writer,
  type WriterAnswer,
  type WriterEvent,
  type WriterInfo,
  type WriterResult,
} from "./writer.js";

/** The snapshot a participant made, as the requester is told. */
export interface SnapshotMade {
  volume: string;
  id: number;
  gmt: string;
}

/** What `abort` undid. */
export interface AbortReport {
  /** The thaw sent to writers that were frozen. */
  thawed: WriterResult[];
  /** Whether a hold had to be released. */
  released: boolean;
  /** The snapshot deleted because the set did not finish, if one had been committed. */
  discarded: SnapshotMade | null;
  /** What could not be undone (a discard that failed). */
  problems: string[];
}

export type LaterEvent = Exclude<WriterEvent, "identify">;

/**
 * One volume as the coordinator drives it, in this order: identify, event(prepare),
 * event(freeze), hold, commit, release, event(thaw), event(post-snapshot), finish.
 * `abort` may come at any point instead, any number of times.
 * Calls after an abort (its own or the coordinator's) reject with ECANCELED.
 */
export interface Participant {
  readonly volume: string;
  identify(setId: string): Promise<{ writers: WriterInfo[]; results: WriterResult[] }>;
  /**
   * Runs `event` on the writers; prepare and freeze stop at the first failure, thaw and
   * post-snapshot go to every writer that was sent freeze. A writer does not get past
   * `deadline` (ms since the epoch) to answer prepare or freeze.
   */
  event(event: LaterEvent, run: { setId: string; deadline?: number }): Promise<WriterResult[]>;
  hold(): Promise<void>;
  commit(opts: { name?: string; setId: string }): Promise<SnapshotMade>;
  release(): Promise<void>;
  discard(id: number): Promise<void>;
  /** The whole set succeeded: the snapshot stays, and the run is over. */
  finish(): Promise<void>;
  abort(reason: string): Promise<AbortReport>;
}

export interface ParticipantOptions {
  /** How long one writer has to answer one event. */
  callTimeoutMs: number;
  /** From this volume's first freeze to its thaw, at most this (default 60000 ms). */
  freezeLimitMs?: number;
  /** From hold to release, at most this (default 10000 ms). */
  holdLimitMs?: number;
}

interface Run {
  setId: string;
  writers: Writer[];
  sentFreeze: Writer[];
  sentThaw: Set<Writer>;
  holding: boolean;
  committed: SnapshotMade | null;
  abortedFor: string | null;
  aborting: Promise<AbortReport> | null;
  freezeTimer: NodeJS.Timeout | undefined;
  holdTimer: NodeJS.Timeout | undefined;
}

export class VolumeParticipant implements Participant {
  private run: Run | null = null;
  private readonly freezeLimitMs: number;
  private readonly holdLimitMs: number;

  constructor(
    readonly volume: string,
    readonly mountpoint: string | null,
    private readonly provider: Provider,
    private readonly writers: () => Writer[] | Promise<Writer[]>,
    private readonly opts: ParticipantOptions,
  ) {
    this.freezeLimitMs = opts.freezeLimitMs ?? 60_000;
    this.holdLimitMs = opts.holdLimitMs ?? 10_000;
  }

  async identify(setId: string): Promise<{ writers: WriterInfo[]; results: WriterResult[] }> {
    if (this.run?.aborting) await this.run.aborting;
    if (this.run && this.run.abortedFor === null)
      throw new FsError("EBUSY", `${this.volume}: snapshot set ${this.run.setId} is under way`);
    const run: Run = {
      setId,
      writers: [],
      sentFreeze: [],
      sentThaw: new Set(),
      holding: false,
      committed: null,
      abortedFor: null,
      aborting: null,
      freezeTimer: undefined,
      holdTimer: undefined,
    };
    this.run = run;
    run.writers = [...(await this.writers())].sort(byName);
    const infos: WriterInfo[] = [];
    const results: WriterResult[] = [];
    // Identify changes nothing in a writer: all are asked at once, answers kept in name order.
    const answers = await Promise.all(
      run.writers.map((w) => this.one(run, w, "identify", this.opts.callTimeoutMs)),
    );
    for (const [i, { result, answer }] of answers.entries()) {
      const w = run.writers[i]!;
      results.push(result);
      if (answer)
        infos.push({
          name: w.name,
          kind: w.kind,
          paths: answer.paths ?? [],
          restore: answer.restore ?? "files",
        });
    }
    return { writers: infos, results };
  }

  async event(
    event: LaterEvent,
    at: { setId: string; deadline?: number },
  ): Promise<WriterResult[]> {
    const run = this.current(at.setId);
    const results: WriterResult[] = [];
    if (event === "prepare" || event === "freeze") {
      for (const w of run.writers) {
        if (run.abortedFor !== null) break;
        if (event === "freeze") {
          if (run.sentFreeze.length === 0) this.startFreezeClock(run);
          run.sentFreeze.push(w);
        }
        const left = at.deadline === undefined ? Infinity : at.deadline - Date.now();
        const timeout = Math.max(1, Math.min(this.opts.callTimeoutMs, left));
        const { result } = await this.one(run, w, event, timeout);
        results.push(result);
        if (!result.ok) break;
      }
      return results;
    }
    if (event === "thaw") {
      clearTimeout(run.freezeTimer);
      return this.thaw(run, this.context(run));
    }
    if (!run.committed) throw new FsError("EINVAL", `${this.volume}: post-snapshot before commit`);
    for (const w of [...run.sentFreeze].reverse()) {
      if (run.abortedFor !== null) break;
      results.push((await this.one(run, w, event, this.opts.callTimeoutMs)).result);
    }
    return results;
  }

  async hold(): Promise<void> {
    const run = this.current();
    run.holding = true;
    run.holdTimer = setTimeout(
      () => void this.abort(`hold limit of ${this.holdLimitMs} ms passed`),
      this.holdLimitMs,
    );
    await this.provider.hold();
    if (run.abortedFor !== null) {
      this.provider.release();
      throw this.abandoned(run);
    }
  }

  async commit(opts: { name?: string; setId: string }): Promise<SnapshotMade> {
    const run = this.current(opts.setId);
    if (!run.holding) throw new FsError("EINVAL", `${this.volume}: commit without a hold`);
    const made = await this.provider.commit(opts);
    const snap = { volume: this.volume, id: made.id, gmt: made.gmt };
    if (run.abortedFor !== null) {
      // Aborted while committing: the snapshot is not to be kept.
      await this.provider.discard(made.id).catch(() => undefined);
      throw this.abandoned(run);
    }
    run.committed = snap;
    return snap;
  }

  async release(): Promise<void> {
    const run = this.run;
    if (!run?.holding) return;
    run.holding = false;
    clearTimeout(run.holdTimer);
    this.provider.release();
  }

  discard(id: number): Promise<void> {
    return this.provider.discard(id);
  }

  async finish(): Promise<void> {
    const run = this.current();
    clearTimeout(run.freezeTimer);
    clearTimeout(run.holdTimer);
    this.run = null;
  }

  abort(reason: string): Promise<AbortReport> {
    const run = this.run;
    if (!run)
      return Promise.resolve({ thawed: [], released: false, discarded: null, problems: [] });
    if (run.aborting) return run.aborting;
    run.abortedFor = reason;
    run.aborting = (async () => {
      clearTimeout(run.freezeTimer);
      clearTimeout(run.holdTimer);
      const released = run.holding;
      if (run.holding) {
        run.holding = false;
        this.provider.release();
      }
      const thawed = await this.thaw(run, {
        ...this.context(run),
        snapshotId: null,
        snapshotName: null,
      });
      const problems: string[] = [];
      const discarded = run.committed;
      run.committed = null;
      if (discarded)
        await this.provider.discard(discarded.id).catch((e: unknown) => {
          problems.push(
            `${this.volume}: could not delete snapshot ${discarded.gmt}: ${reasonOf(e)}`,
          );
        });
      return { thawed, released, discarded, problems };
    })();
    return run.aborting;
  }

  /** Thaws, in reverse order, every writer sent freeze and not yet sent thaw. */
  private async thaw(run: Run, ctx: EventContext): Promise<WriterResult[]> {
    const results: WriterResult[] = [];
    for (const w of [...run.sentFreeze].reverse()) {
      if (run.sentThaw.has(w)) continue;
      run.sentThaw.add(w);
      const { result } = await this.one(run, w, "thaw", this.opts.callTimeoutMs, ctx);
      results.push(result);
    }
    return results;
  }

  private startFreezeClock(run: Run): void {
    run.freezeTimer = setTimeout(
      () => void this.abort(`freeze limit of ${this.freezeLimitMs} ms passed`),
      this.freezeLimitMs,
    );
  }

  private current(setId?: string): Run {
    const run = this.run;
    if (!run) throw new FsError("EINVAL", `${this.volume}: no snapshot under way`);
    if (setId !== undefined && setId !== run.setId)
      throw new FsError(
        "EBUSY",
        `${this.volume}: snapshot set ${run.setId} is under way, not ${setId}`,
      );
    if (run.abortedFor !== null) throw this.abandoned(run);
    return run;
  }

  private abandoned(run: Run): FsError {
    return new FsError("ECANCELED", `${this.volume} abandoned the snapshot: ${run.abortedFor}`);
  }

  private context(run: Run): EventContext {
    return {
      volume: this.volume,
      mountpoint: this.mountpoint,
      setId: run.setId,
      snapshotId: run.committed?.id ?? null,
      snapshotName: run.committed?.gmt ?? null,
    };
  }

  private async one(
    run: Run,
    w: Writer,
    event: WriterEvent,
    timeoutMs: number,
    ctx = this.context(run),
  ): Promise<{ result: WriterResult; answer: WriterAnswer | null }> {
    const at = Date.now();
    const base = { volume: this.volume, event, writer: w.name, kind: w.kind, at };
    try {
      const answer = await w.call(event, ctx, timeoutMs);
      return { result: { ...base, ok: true, ms: Date.now() - at }, answer };
    } catch (e) {
      // A call cut short by an abort says why the run was abandoned.
      const why = run.abortedFor === null ? "" : ` (${run.abortedFor})`;
      const result: WriterResult = {
        ...base,
        ok: false,
        reason: `${reasonOf(e)}${why}`,
        ms: Date.now() - at,
      };
      return { result, answer: null };
    }
  }
}
