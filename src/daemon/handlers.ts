// The one implementation of every control method: each delegates to the Service (whose mount,
// when there is one, adds the mounted behaviour) or to the volume's snapshot protocol.

import { methodTable } from "../snapshot/rpc/api.js";
import type { Caller, MethodTable } from "../snapshot/rpc/peer.js";
import { controlApi } from "./api.js";
import { openChannel } from "./channel.js";
import { snapshotDiff } from "./diff.js";
import type { VolumeProtocol } from "./protocol.js";
import { receiveInto } from "./receive.js";
import { restore } from "./restore.js";
import { Retention } from "./retention-admin.js";
import { send } from "./send.js";
import type { Service } from "./service.js";
import { versions } from "./versions.js";

/** The method table of a store: served by its daemon, or called in-process when not mounted. */
export function controlMethods(
  s: Service,
  protocol: VolumeProtocol,
  retention = new Retention(s),
): MethodTable<Caller> {
  return methodTable(controlApi, {
    status: () => s.status(),
    "snapshot.list": (p) => (p.settle ? s.listSettled() : s.list()),
    "snapshot.delete": (p) => s.delete(p.snapshot),
    "snapshot.revert": (p) =>
      s.revert(p.snapshot, { discardNewer: p.discardNewer, force: p.force }),
    "snapshot.history": () => protocol.history(),
    "snapshot.hold": (p) => retention.hold(p.snapshot, p.tag),
    "snapshot.release": (p) => retention.release(p.snapshot, p.tag),
    "snapshot.cleanup": (p) => retention.cleanup({ dryRun: p.dryRun }),
    get: (p) => retention.get(p.properties),
    set: (p) => retention.set(p.assignments),
    "snapshot.diff": (p) => snapshotDiff(s, p.from, p.to),
    storage: () => s.storage(),
    fsck: (p, caller) =>
      s.check({
        snapshot: p.snapshot,
        progress: (done, total) => caller.notify("progress", { done, total }),
      }),
    "writers.list": () => protocol.list(),
    versions: (p) => versions(s, p.path),
    restore: ({ progress, ...p }, caller) =>
      restore(
        s,
        p,
        progress ? (done, total) => caller.notify("progress", { done, total }) : undefined,
      ),
    "snapshot.send": async ({ progress, output, ...p }, caller) => {
      const onProgress = progress
        ? (done: number, total: number) => caller.notify("progress", { done, total })
        : undefined;
      if (output !== undefined) return send(s, p, { file: output }, onProgress);
      const out = await openChannel(caller);
      try {
        return await send(s, p, { out }, onProgress);
      } catch (e) {
        out.destroy();
        throw e;
      }
    },
    "snapshot.receive": async (p, caller) => {
      const input = await openChannel(caller);
      try {
        return await receiveInto(s, input, { force: p.force });
      } finally {
        input.destroy();
      }
    },
    "history.append": async (p) => {
      await protocol.appendHistory(p.record);
      return null;
    },
    "protocol.identify": (p, caller) => protocol.identify(p.setId, caller),
    "protocol.event": (p) => protocol.event(p.event, p.setId, p.deadline),
    "protocol.hold": async () => {
      await protocol.participant.hold();
      return null;
    },
    "protocol.commit": (p) => protocol.participant.commit({ setId: p.setId, name: p.name }),
    "protocol.release": async () => {
      await protocol.participant.release();
      // The gate is open: `.snapshots` as the kernel has it shows the new snapshot.
      await s.mount?.invalidated();
      return null;
    },
    "protocol.discard": async (p) => {
      await protocol.participant.discard(p.id);
      return null;
    },
    "protocol.finish": async () => {
      await protocol.finish();
      return null;
    },
    "protocol.abort": (p) => protocol.abort(p.reason),
    "snapshot.expose": (p) => s.expose(p.snapshot, p.mountpoint),
    "snapshot.unexpose": (p) => s.mounted().unexpose(p.mountpoint),
    unmount: () => {
      s.mounted().unmount();
      return { stopping: true } as const;
    },
    "writer.register": (p, caller) => protocol.register(p, caller),
  });
}
