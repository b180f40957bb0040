// The requester: runs the snapshot protocol across several volumes at once (a snapshot set) and
// records each run in every volume's history. It never prints a result; the snapshot verbs do.

import type { SnapshotRow } from "../daemon/index.js";
import { FsError } from "../errors.js";
import type { SnapshotOptions, SnapshotRun } from "../snapshot/index.js";
import { type Backend, connect, resolveTarget } from "./connect.js";
import { message } from "./format.js";

/**
 * Runs the snapshot protocol on every target at once, and records the run in each volume's
 * history, whether it succeeded or not.
 */
export async function snapshotSet(
  targets: string[],
  opts: SnapshotOptions,
): Promise<{ setId: string; rows: Array<SnapshotRow & { volume: string }> }> {
  // The requester's modules only, not the snapshot layer's index: that also loads the socket
  // writers' message schemas (zod); importing it took 62-92 ms, the coordinator alone 8-12 ms.
  const [{ BackendParticipant }, { ProtocolError, takeSnapshot }, { historyRecord }] =
    await Promise.all([
      import("./participant.js"),
      import("../snapshot/coordinator.js"),
      import("../snapshot/history.js"),
    ]);
  const stores = await Promise.all(targets.map(async (t) => (await resolveTarget(t)).store));
  const twice = stores.find((s, i) => stores.indexOf(s) !== i);
  if (twice) throw new FsError("EINVAL", `${twice} is named twice`);
  const backends: Backend[] = [];
  try {
    for (const store of stores) backends.push(await connect(store, { write: true }));
    const participants = backends.map((b, i) => new BackendParticipant(stores[i]!, b));
    let run: SnapshotRun;
    try {
      run = await takeSnapshot(participants, opts);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      run = e.record;
      await record(run);
      throw e;
    }
    // The history line and the new snapshots' rows are asked for together.
    const [, listed] = await Promise.all([
      record(run),
      Promise.all(backends.map((b) => b.call("snapshot.list", { settle: false }))),
    ]);
    const rows: Array<SnapshotRow & { volume: string }> = [];
    for (const [i, volume] of stores.entries()) {
      const made = run.snapshots.find((x) => x.volume === volume);
      const row = listed[i]?.find((r) => r.id === made?.id);
      if (row) rows.push({ volume, ...row });
    }
    return { setId: run.setId, rows };
  } finally {
    for (const b of backends) await b.close();
  }

  /** A history line that cannot be written is said on stderr; it never fails the run. */
  async function record(run: SnapshotRun): Promise<void> {
    await Promise.all(
      backends.map((b, i) =>
        b
          .call("history.append", { record: historyRecord(run, stores[i]!) })
          .catch((e: unknown) =>
            process.stderr.write(`shadowfs: ${stores[i]}: history not written: ${message(e)}\n`),
          ),
      ),
    );
  }
}
