// One volume's part in the snapshot protocol: its writers (executables in writers.d, clients
// registered on the control socket), its participant, run slot and history. It never keeps a run
// going once the requester that drives it is gone.

import { FsError } from "../errors.js";
import {
  appendHistory,
  type HistoryRecord,
  isWriterEvent,
  type LaterEvent,
  parseRegistration,
  readHistory,
  type ScanProblem,
  SocketWriter,
  scanWriters,
  VolumeParticipant,
  type Writer,
  type WriterChannel,
  type WriterInfo,
  type WriterResult,
} from "../snapshot/index.js";
import { storePaths } from "./paths.js";
import { type Method, type Peer, param } from "./rpc.js";
import type { Service } from "./service.js";

/** How long one writer has to answer one event, unless the freeze limit comes first. */
const CALL_TIMEOUT_MS = 30_000;

export interface WriterListing {
  writers: Array<WriterInfo & { identified: string | null; last: WriterResult | null }>;
  /** Entries of writers.d that are not usable writers, and why. */
  problems: ScanProblem[];
}

const isChannel = (peer: Peer): peer is Peer & WriterChannel =>
  "request" in peer && "onClose" in peer;

export class VolumeProtocol {
  private readonly registered = new Map<string, SocketWriter>();
  readonly participant: VolumeParticipant;
  /** One run at a time: a second requester waits for the slot. */
  private slot: Promise<void> = Promise.resolve();
  private freeSlot: (() => void) | undefined;
  private readonly history: string;

  constructor(
    private readonly service: Service,
    mountpoint: string | null,
  ) {
    const { dir, writers, history } = storePaths(service.store);
    this.history = history;
    this.participant = new VolumeParticipant(
      dir,
      mountpoint,
      service.provider(),
      async () => [...(await scanWriters(writers)).writers, ...this.registered.values()],
      { callTimeoutMs: CALL_TIMEOUT_MS },
    );
  }

  /** Ends the run under way, if any: writers thawed, hold released, its snapshot deleted. */
  async abort(reason: string): Promise<void> {
    await this.participant.abort(reason);
    this.endRun();
  }

  private async beginRun(peer: Peer): Promise<void> {
    const previous = this.slot;
    let free!: () => void;
    this.slot = new Promise((r) => {
      free = r;
    });
    // A requester that goes away mid-run leaves nothing frozen, held or half-made; one that
    // goes away while waiting for the slot gives it up at once.
    let gone = false;
    if (isChannel(peer))
      peer.onClose(() => {
        gone = true;
        if (this.freeSlot === free) void this.abort("the requester went away");
      });
    await previous;
    if (gone) {
      free();
      throw new FsError("ECONNRESET", "the requester went away");
    }
    this.freeSlot = free;
  }

  private endRun(): void {
    const free = this.freeSlot;
    this.freeSlot = undefined;
    free?.();
  }

  private async list(): Promise<WriterListing> {
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
    for (const r of (await readHistory(this.history)).records)
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

  methods(): Record<string, Method> {
    const p = this.participant;
    const setId = (params: Record<string, unknown>) => param(params, "setId");
    return {
      "writer.register": async (params, peer) => {
        if (!isChannel(peer))
          throw new FsError("ENOTCONN", "writers register with a mounted store's daemon");
        const reg = parseRegistration(params);
        if (this.registered.has(reg.name))
          throw new FsError("EEXIST", `a writer named "${reg.name}" is registered`);
        const w = new SocketWriter(peer, reg);
        this.registered.set(reg.name, w);
        peer.onClose(() => {
          if (this.registered.get(reg.name) === w) this.registered.delete(reg.name);
        });
        return { registered: reg.name };
      },
      "writers.list": () => this.list(),
      "protocol.identify": async (params, peer) => {
        await this.beginRun(peer);
        try {
          return await p.identify(setId(params));
        } catch (e) {
          await this.abort(e instanceof Error ? e.message : String(e));
          throw e;
        }
      },
      "protocol.event": async (params) => {
        const event = params.event;
        if (!isWriterEvent(event) || event === "identify")
          throw new FsError("EINVAL", `no protocol event ${String(event)}`);
        const deadline = typeof params.deadline === "number" ? params.deadline : undefined;
        const results = await p.event(event as LaterEvent, { setId: setId(params), deadline });
        // The writers are quiet: what they wrote goes out now, not during the hold.
        if (event === "freeze" && results.every((r) => r.ok)) await this.service.flush();
        return results;
      },
      "protocol.hold": () => p.hold(),
      "protocol.commit": (params) =>
        p.commit({
          setId: setId(params),
          ...(typeof params.name === "string" ? { name: params.name } : {}),
        }),
      "protocol.release": () => p.release(),
      "protocol.discard": (params) => p.discard(Number(params.id)),
      "protocol.finish": async () => {
        await p.finish();
        this.endRun();
      },
      "protocol.abort": async (params) => {
        const report = await p.abort(param(params, "reason"));
        this.endRun();
        return report;
      },
      "history.append": async (params) => {
        await appendHistory(this.history, params.record as HistoryRecord);
      },
      "snapshot.history": () => readHistory(this.history),
    };
  }
}
