// What a receive in progress keeps in its store's `receive/` directory: its state (replaced
// atomically), the stream's parts as far as they came, and the token that resumes it. It never
// reads a stream and never changes a volume.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { encodeToken, NodeHostFs, replaceFileAtomically, type StreamHeader } from "../cow/index.js";
import { FsError } from "../errors.js";
import { gmtName } from "../mount/index.js";

/**
 * `receiving`: chunks before `next` are kept durably (a full stream's in `volume/base.img`, an
 * incremental one's in its segments, each `segments[i]` bytes long); `applying`: an incremental
 * stream checked whole, being written to production.
 */
export type Staged =
  | { state: "receiving"; header: StreamHeader; next: number; segments: number[] }
  | { state: "applying"; header: StreamHeader; segments: number[] };

/** Kept bytes a receive writes between two updates of its state. */
export const CHECKPOINT_BYTES = 64 << 20;

export const segmentFile = (dir: string, i: number) => join(dir, `stream-${i}`);
const stateFile = (dir: string) => join(dir, "state.json");

/** The state in `dir`; undefined when there is none (or what is there is not one). */
export async function readStaged(dir: string): Promise<Staged | undefined> {
  try {
    const st = JSON.parse(await readFile(stateFile(dir), "utf8")) as Staged;
    return st.state === "receiving" || st.state === "applying" ? st : undefined;
  } catch {
    return undefined;
  }
}

/** Replaces the state in `dir`, durably (and, with it, the names of the files beside it). */
export function writeStaged(dir: string, st: Staged): Promise<void> {
  return replaceFileAtomically(new NodeHostFs(), stateFile(dir), Buffer.from(JSON.stringify(st)));
}

export const describe = (s: { createdAt: number; name?: string | undefined }) =>
  `${gmtName(s.createdAt)}${s.name !== undefined ? ` (${s.name})` : ""}`;

/** The token that resumes a receive kept as `st`. */
export const tokenOf = (st: Staged & { state: "receiving" }) =>
  encodeToken({
    snapshot: st.header.snapshot.guid,
    ...(st.header.base ? { base: st.header.base.guid } : {}),
    from: st.next,
  });

/** How to go on with the receive kept as `st` in `store`: the command that resumes it. */
export const howToResume = (store: string, st: Staged & { state: "receiving" }) =>
  `resume it with \`shadowfs snapshot send SOURCE --resume ${tokenOf(st)} | shadowfs snapshot ` +
  `receive ${store}\`, or discard it with \`shadowfs snapshot receive --abort ${store}\``;

/** The refusal of a new receive into `store`, which holds the interrupted one `st`. */
export function interrupted(store: string, st: Staged): FsError {
  if (st.state === "applying")
    return new FsError("EBUSY", `a receive is being applied to ${store}; opening it completes it`);
  return new FsError(
    "EBUSY",
    `${store} holds an interrupted receive of snapshot ${describe(st.header.snapshot)}: ${howToResume(store, st)}`,
  );
}

/** Checks that the resumed stream `h` goes on with the receive kept as `st` in `store`. */
export function checkResumes(
  store: string,
  st: Staged | undefined,
  h: StreamHeader,
): Staged & {
  state: "receiving";
} {
  if (st?.state !== "receiving")
    throw new FsError("ENOENT", `${store} holds no interrupted receive for this stream to resume`);
  const same = st.header.snapshot.guid === h.snapshot.guid && st.header.base?.guid === h.base?.guid;
  if (!same)
    throw new FsError(
      "EINVAL",
      `this stream resumes a receive of snapshot ${describe(h.snapshot)}; ${store} holds one of ${describe(st.header.snapshot)}`,
    );
  if (h.resume!.from !== st.next)
    throw new FsError(
      "EINVAL",
      `this stream resumes from chunk ${h.resume!.from}; ${store} has kept up to chunk ${st.next}: ${howToResume(store, st)}`,
    );
  return st;
}
