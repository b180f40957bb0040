// One volume's part in the snapshot protocol: its writers (executables in writers.d, clients
// registered on the control socket), its participant, run slot and history. It never keeps a run
// going once the requester that drives it is gone.

import { FsError } from "../errors.js";
import {
  type AbortReport,
  appendHistory,
  type History,
  type HistoryRecord,
  type LaterEvent,
  readHistory,
  type ScanProblem,
  SocketWriter,
  scanWriters,
  VolumeParticipant,
  type Writer,
  type WriterChannel,
  type WriterInfo,
  type WriterRegistration,
  type WriterResult,
} from "../snapshot/index.js";
import type { Caller } from "../snapshot/rpc/peer.js";
import { storePaths } from "./paths.js";
import type { Service } from "./service.js";

/** How long one writer has to answer one event, unless the freeze limit comes first. */
const CALL_TIMEOUT_MS = 30_000;

export interface WriterListing {
  writers: Array<WriterInfo & { identified: string | null; last: WriterResult | null }>;
  /** Entries of writers.d that are not usable writers, and why. */
  problems: ScanProblem[];
}

const isChannel = (peer: Caller): peer is Caller & WriterChannel =>
  "request" in peer && "onClose" in peer;

export class VolumeProtocol {
  private readonly registered = new Map<string, SocketWriter>();
  readonly participant: VolumeParticipant;
  /** One run at a time: a second requester waits for the slot. */
  private slot: Promise<void> = Promise.resolve();
  private freeSlot: (() => void) | undefined;
  /** Resolves when the requester of the run under way closes its connection (none in-process). */
  private requesterGone: Promise<void> | undefined;
  private readonly historyPath: string;

  constructor(
    private readonly service: Service,
    mountpoint: string | null,
  ) {
    const { dir, writers, history } = storePaths(service.store);
    this.historyPath = history;
    this.participant = new VolumeParticipant(
      dir,
      mountpoint,
      service.provider(),
      async () => [...(await scanWriters(writers)).writers, ...this.registered.values()],
      { callTimeoutMs: CALL_TIMEOUT_MS },
    );
  }

  /** Ends the run under way, if any: writers thawed, hold released, its snapshot deleted. */
  async abort(reason: string): Promise<AbortReport> {
    const report = await this.participant.abort(reason);
    this.endRun();
    return report;
  }

  /** Resolves when the requester of the run under way has gone; undefined when none runs. */
  requesterLeaving(): Promise<void> | undefined {
    return this.requesterGone;
  }

  private async beginRun(peer: Caller): Promise<void> {
    const previous = this.slot;
    let free!: () => void;
    this.slot = new Promise((r) => {
      free = r;
    });
    // A requester that goes away mid-run leaves nothing frozen, held or half-made; one that
    // goes away while waiting for the slot gives it up at once.
    let gone = false;
    let left: () => void = () => undefined;
    const leaving = new Promise<void>((r) => {
      left = r;
    });
    if (isChannel(peer))
      peer.onClose(() => {
        gone = true;
        left();
        if (this.freeSlot === free) this.abort("the requester went away").catch(() => undefined);
      });
    await previous;
    if (gone) {
      free();
      throw new FsError("ECONNRESET", "the requester went away");
    }
    this.freeSlot = free;
    this.requesterGone = isChannel(peer) ? leaving : undefined;
  }

  private endRun(): void {
    const free = this.freeSlot;
    this.freeSlot = undefined;
    this.requesterGone = undefined;
    free?.();
  }

  /** Every writer (asked to identify itself) with its last answer, and writers.d's problems. */
  async list(): Promise<WriterListing> {
    const { writers, problems } = await scanWriters(storePaths(this.service.store).writers);
    const all: Writer[] = [...writers, ...this.registered.values()].sort((x, y) =>
      x.name < y.name ? -1 : x.name > y.name ? 1 : 0,
    );
    const ctx = {
      volume: storePaths(this.service.store).dir,
      mountpoint: this.participant.mountpoint,
      setId: "",
      snapshotId: null,
      snapshotName: null,
    };
    // Each writer's last answer, as the history of runs keeps it.
    const last = new Map<string, WriterResult>();
    for (const r of (await readHistory(this.historyPath)).records)
      for (const e of r.events) last.set(`${e.kind}:${e.writer}`, e);
    const out: WriterListing["writers"] = [];
    for (const w of all) {
      let info = { paths: [] as string[], restore: "files" };
      let identified: string | null = "ok";
      try {
        const a = await w.call("identify", ctx, 5000);
        info = { paths: a.paths ?? [], restore: a.restore ?? "files" };
      } catch (e) {
        identified = e instanceof Error ? e.message : String(e);
      }
      out.push({
        name: w.name,
        kind: w.kind,
        ...info,
        identified,
        last: last.get(`${w.kind}:${w.name}`) ?? null,
      });
    }
    return { writers: out, problems };
  }

  /** Keeps a long-lived writer on the connection it registered on, until that closes. */
  register(reg: WriterRegistration, peer: Caller): { registered: string } {
    if (!isChannel(peer))
      throw new FsError("ENOTCONN", "writers register with a mounted store's daemon");
    if (this.registered.has(reg.name))
      throw new FsError("EEXIST", `a writer named "${reg.name}" is registered`);
    const w = new SocketWriter(peer, reg);
    this.registered.set(reg.name, w);
    peer.onClose(() => {
      if (this.registered.get(reg.name) === w) this.registered.delete(reg.name);
    });
    return { registered: reg.name };
  }

  /** Starts a run for the requester `peer` (waiting for the slot) and asks writers to identify. */
  async identify(setId: string, peer: Caller): ReturnType<VolumeParticipant["identify"]> {
    await this.beginRun(peer);
    try {
      return await this.participant.identify(setId);
    } catch (e) {
      await this.abort(e instanceof Error ? e.message : String(e));
      throw e;
    }
  }

  async event(event: LaterEvent, setId: string, deadline?: number): Promise<WriterResult[]> {
    const results = await this.participant.event(event, { setId, deadline });
    // The writers are quiet: what they wrote goes out now, not during the hold.
    if (event === "freeze" && results.every((r) => r.ok)) await this.service.flush();
    return results;
  }

  async finish(): Promise<void> {
    await this.participant.finish();
    this.endRun();
  }

  appendHistory(record: HistoryRecord): Promise<void> {
    return appendHistory(this.historyPath, record);
  }

  history(): Promise<History> {
    return readHistory(this.historyPath);
  }
}
