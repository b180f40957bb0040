// Moving a stream between stores for the command line: a snapshot sent by the store a TARGET
// names (through its daemon or opened here) into whatever consumes it, and a stream made into a
// new store or applied to one. It never reads what is in a stream.

import { Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReceiveResult } from "../daemon/receive.js";
import type { SendResult } from "../daemon/send.js";
import { isFsError } from "../errors.js";
import { connect, type OnProgress, resolveTarget, withTarget } from "./connect.js";

/** `pipeline(from, to)`, settled with its error (or undefined) instead of rejecting. */
export const copy = (from: AsyncIterable<Uint8Array> | Readable, to: Writable) =>
  pipeline(from instanceof Readable ? from : Readable.from(from), to).then(
    () => undefined,
    (e: unknown) => e,
  );

/**
 * Snapshot `snapshot` of TARGET's store (from `from`, incrementally) as a stream, given to
 * `consume`. When both fail, the consumer's error is the one thrown, unless the stream was cut
 * short, which the sender's failure explains.
 */
export async function sendTo<R>(
  target: string,
  params: { snapshot?: string; from?: string; resume?: string; progress?: boolean },
  consume: (stream: Readable) => Promise<R>,
  onProgress?: OnProgress,
): Promise<{ sent: SendResult; result: R }> {
  let consumed: Promise<R> | undefined;
  let sent: SendResult | undefined;
  let failure: unknown;
  try {
    sent = await withTarget(
      target,
      {
        onProgress,
        onChannel: (socket) => {
          consumed = consume(socket).finally(() => socket.destroy());
          consumed.catch(() => undefined);
        },
      },
      (call) => call("snapshot.send", { progress: onProgress !== undefined, ...params }),
    );
  } catch (e) {
    failure = e;
  }
  if (!consumed) throw failure;
  try {
    const result = await consumed;
    if (failure) throw failure;
    return { sent: sent!, result };
  } catch (e) {
    const cut = isFsError(e, "EBADMSG") && /cut short/.test(e.message);
    throw failure !== undefined && cut ? failure : e;
  }
}

/** Applies an incremental stream to the store TARGET names (mounted or not). */
export async function applyStream(
  target: string,
  stream: AsyncIterable<Uint8Array>,
  force: boolean,
): Promise<ReceiveResult> {
  const { store } = await resolveTarget(target);
  let copied: Promise<unknown> = Promise.resolve();
  const backend = await connect(store, {
    write: true,
    onChannel: (socket) => {
      copied = copy(stream, socket);
    },
  });
  try {
    return await backend.call("snapshot.receive", { force });
  } finally {
    await backend.close();
    // The store has checked the stream to its end: a copy that failed would have cut it.
    await copied;
  }
}
