// A volume's part in a snapshot run, reached through its backend (the daemon's control socket,
// or the store opened in this process). It holds no protocol logic: the volume's side has it.

import type {
  AbortReport,
  LaterEvent,
  Participant,
  SnapshotMade,
  WriterInfo,
  WriterResult,
} from "../snapshot/index.js";
import type { Backend } from "./connect.js";

export class BackendParticipant implements Participant {
  constructor(
    readonly volume: string,
    private readonly backend: Backend,
  ) {}

  identify(setId: string): Promise<{ writers: WriterInfo[]; results: WriterResult[] }> {
    return this.backend.call("protocol.identify", { setId });
  }

  event(event: LaterEvent, run: { setId: string; deadline?: number }): Promise<WriterResult[]> {
    return this.backend.call("protocol.event", { event, ...run });
  }

  async hold(): Promise<void> {
    await this.backend.call("protocol.hold");
  }

  commit(opts: { name?: string; setId: string }): Promise<SnapshotMade> {
    return this.backend.call("protocol.commit", opts);
  }

  async release(): Promise<void> {
    await this.backend.call("protocol.release");
  }

  async discard(id: number): Promise<void> {
    await this.backend.call("protocol.discard", { id });
  }

  async finish(): Promise<void> {
    await this.backend.call("protocol.finish");
  }

  abort(reason: string): Promise<AbortReport> {
    return this.backend.call("protocol.abort", { reason });
  }
}
