// `snapshot send`: a snapshot of an open store written as a stream, whole or from an older
// snapshot (only the chunks the diff areas between them hold), to a file or to a socket. It never
// changes the store.

import { once } from "node:events";
import type { Writable } from "node:stream";
import {
  decodeToken,
  NodeHostFs,
  type SnapshotInfo,
  type StreamSink,
  snapshotStream,
} from "../cow/index.js";
import { einval, enoent } from "../errors.js";
import { gmtName } from "../mount/index.js";
import type { Service } from "./service.js";

export interface SendResult {
  snapshot: string;
  /** The base of an incremental stream; null for a full one. */
  base: string | null;
  /** Bytes of the stream. */
  bytes: number;
  dataChunks: number;
  zeroChunks: number;
}

/** Where a stream goes: a socket (or any Writable), or a file made (or emptied) for it. */
export type SendTo = { out: Writable } | { file: string };

/** Writes to `out`, each call's pieces in one system call where it can (cork). */
function writableSink(out: Writable): StreamSink {
  let failed: Error | undefined;
  out.on("error", (e) => {
    failed ??= e;
  });
  return {
    write: (parts) =>
      new Promise<void>((ok, fail) => {
        if (failed) return fail(failed);
        out.cork();
        for (const [i, p] of parts.entries())
          out.write(p, i < parts.length - 1 ? undefined : (e) => (e ? fail(e) : ok()));
        out.uncork();
      }),
  };
}

/**
 * Writes snapshot `snapshot` of the store as a stream: with `from`, an older snapshot, the chunks
 * that may differ between them; without, every chunk in use. `progress` counts the chunks looked
 * at. A file is written with mode 0600 (and not synced, as a shell's `>` would not); one left by
 * a failure is removed.
 */
export async function send(
  s: Service,
  p: { snapshot?: string; from?: string; resume?: string },
  to: SendTo,
  progress?: (done: number, total: number) => void,
): Promise<SendResult> {
  const { snap, base, resumeFrom } = what(s, p);
  let done = 0;
  let shown = 0;
  const stream = snapshotStream(s.volume, snap.id, {
    base: base?.id,
    resumeFrom,
    read: (n) => {
      done += n;
      if (progress && (done - shown >= stream.chunks / 100 || done === stream.chunks)) {
        shown = done;
        progress(done, stream.chunks);
      }
    },
  });
  let bytes = 0;
  const counted = (sink: StreamSink): StreamSink => ({
    write: (parts) => {
      for (const b of parts) bytes += b.length;
      return sink.write(parts);
    },
  });
  let counts: Awaited<ReturnType<typeof stream.write>>;
  if ("out" in to) {
    counts = await stream.write(counted(writableSink(to.out)));
    to.out.end();
    await once(to.out, "finish");
  } else {
    const host = new NodeHostFs();
    const f = await host.open(to.file, { create: true });
    try {
      await f.truncate(0);
      // Each write takes its place when called (the writer has one under way at a time).
      let at = 0;
      const file: StreamSink = {
        write: (parts) => {
          const position = at;
          for (const b of parts) at += b.length;
          return f.writev(parts, position);
        },
      };
      counts = await stream.write(counted(file));
    } catch (e) {
      await host.unlink(to.file).catch(() => undefined);
      throw e;
    } finally {
      await f.close();
    }
  }
  return {
    snapshot: gmtName(snap.createdAt),
    base: base ? gmtName(base.createdAt) : null,
    bytes,
    ...counts,
  };
}

/** The snapshots a send names, by reference or by a resume token (which names them by guid). */
function what(
  s: Service,
  p: { snapshot?: string; from?: string; resume?: string },
): { snap: SnapshotInfo; base?: SnapshotInfo; resumeFrom?: number } {
  if (p.resume !== undefined) {
    if (p.snapshot !== undefined || p.from !== undefined)
      throw einval("a resume token names the snapshots: give no snapshot and no --from with it");
    const t = decodeToken(p.resume);
    const byGuid = (guid: string) => {
      const found = s.volume.snapshots().find((x) => x.guid === guid);
      if (!found) throw enoent(`the snapshot the token names (${guid}) is not in ${s.store}`);
      return found;
    };
    return {
      snap: byGuid(t.snapshot),
      ...(t.base !== undefined ? { base: byGuid(t.base) } : {}),
      resumeFrom: t.from,
    };
  }
  if (p.snapshot === undefined) throw einval("name the snapshot to send, or give a resume token");
  const snap = s.find(p.snapshot);
  const base = p.from === undefined ? undefined : s.find(p.from);
  if (base && base.id >= snap.id)
    throw einval(`--from ${p.from} is not older than snapshot ${p.snapshot}`);
  return { snap, ...(base ? { base } : {}) };
}
