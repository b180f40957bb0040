// The timeline of a mounted volume: a snapshot through the full writers' protocol at each
// interval, tagged as the timeline's, then cleanup by the retention rules. It never deletes.

import { randomUUID } from "node:crypto";
import type { Logger } from "../cow/index.js";
import { historyRecord } from "../snapshot/history.js";
import {
  type Participant,
  ProtocolError,
  type SnapshotRun,
  takeSnapshot,
} from "../snapshot/index.js";
import type { VolumeProtocol } from "./protocol.js";
import type { Retention } from "./retention-admin.js";
import type { Service } from "./service.js";

/** Time as the timeline sees it; tests give their own. */
export interface Clock {
  now(): number;
  /** Calls `fn` once after `ms`; returns a function that cancels it. */
  after(ms: number, fn: () => void): () => void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  after: (ms, fn) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return () => clearTimeout(t);
  },
};

/** The volume's side of the protocol, called in this process (the daemon is the requester). */
function localParticipant(service: Service, protocol: VolumeProtocol): Participant {
  const caller = { notify: () => undefined };
  const p = protocol.participant;
  return {
    volume: service.store,
    identify: (setId) => protocol.identify(setId, caller),
    event: (event, run) => protocol.event(event, run.setId, run.deadline),
    hold: () => p.hold(),
    commit: (opts) => p.commit(opts),
    release: () => p.release(),
    discard: (id) => p.discard(id),
    finish: () => protocol.finish(),
    abort: (reason) => protocol.abort(reason),
  };
}

export class Timeline {
  private cancel: (() => void) | undefined;
  private stopped = false;
  /** The tick under way, if any. */
  private running: Promise<void> | undefined;

  constructor(
    private readonly service: Service,
    private readonly protocol: VolumeProtocol,
    private readonly retention: Retention,
    private readonly log: Logger,
    private readonly clock: Clock = systemClock,
  ) {
    retention.onChange(() => this.schedule());
  }

  /** Starts ticking (when the timeline is on); `set` reschedules. */
  start(): void {
    this.schedule();
  }

  /** Stops ticking, and waits for a tick under way. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.cancel?.();
    await this.running;
  }

  /** The next tick: at the next multiple of the interval since the epoch (hourly: on the hour). */
  private schedule(): void {
    this.cancel?.();
    this.cancel = undefined;
    const { enabled, intervalMs } = this.retention.timeline();
    if (!enabled || this.stopped) return;
    const now = this.clock.now();
    const due = (Math.floor(now / intervalMs) + 1) * intervalMs;
    this.cancel = this.clock.after(due - now, () => {
      this.running = this.tick().finally(() => {
        this.running = undefined;
        this.schedule();
      });
    });
  }

  /** One tick: a timeline snapshot (unless the volume is idle and keep-empty is off), then cleanup. */
  async tick(): Promise<void> {
    const { enabled, keepEmpty } = this.retention.timeline();
    if (!enabled || this.stopped) return;
    try {
      if (keepEmpty || !(await this.idle())) await this.snapshot();
      else this.log.info({ store: this.service.store }, "timeline: nothing changed, no snapshot");
    } catch (e) {
      this.log.error(
        { store: this.service.store, err: (e as Error).message },
        "timeline snapshot failed",
      );
    }
    if (this.stopped) return;
    try {
      const r = await this.retention.cleanup();
      for (const d of r.deleted)
        this.log.info(
          { store: this.service.store, snapshot: d.gmt, rule: d.rule },
          "timeline cleanup deleted a snapshot",
        );
    } catch (e) {
      this.log.error(
        { store: this.service.store, err: (e as Error).message },
        "timeline cleanup failed",
      );
    }
  }

  /** Nothing changed since the newest snapshot: its diff area is still empty, once settled. */
  private async idle(): Promise<boolean> {
    const rows = await this.service.listSettled();
    const newest = rows.at(-1);
    return newest !== undefined && this.service.volume.preservedChunks(newest.id) === 0;
  }

  /** A snapshot through the writers' protocol, recorded in the volume's history as any run is. */
  private async snapshot(): Promise<void> {
    const setId = randomUUID();
    const { service, protocol } = this;
    service.timelineSets.add(setId);
    let run: SnapshotRun;
    try {
      run = await takeSnapshot([localParticipant(service, protocol)], { setId });
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      await protocol.appendHistory(historyRecord(e.record, service.store));
      throw e;
    } finally {
      service.timelineSets.delete(setId);
    }
    await protocol.appendHistory(historyRecord(run, service.store));
  }
}
