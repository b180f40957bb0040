// The `snapshot send` and `snapshot receive` verbs: a snapshot written out as a stream, and a
// stream made into a store or applied to one. Each moves bytes and prints; none reads a stream.

import { createReadStream, createWriteStream } from "node:fs";
import { unlink } from "node:fs/promises";
import { resolve } from "node:path";
import { Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Command } from "commander";
import type { ReceiveResult } from "../../daemon/receive.js";
import { FsError } from "../../errors.js";
import { connect, resolveTarget, withTarget } from "../connect.js";
import { formatBytes, json, print, progress } from "../format.js";

/** `pipeline(from, to)`, settled with its error (or undefined) instead of rejecting. */
const copy = (from: NodeJS.ReadableStream | Readable, to: Writable) =>
  pipeline(from, to).then(
    () => undefined,
    (e: unknown) => e,
  );

function sendCommand(snapshot: Command): void {
  snapshot
    .command("send")
    .description(
      "write a snapshot as a stream: every chunk in use, or with --from only the chunks that " +
        "differ from an older snapshot",
    )
    .argument("<target>")
    .argument("<snapshot>")
    .option("--from <base>", "an older snapshot: send only what changed since it")
    .option("-o, --output <file>", "write the stream to FILE, not to standard output")
    .action(async (target: string, snap: string, o: { from?: string; output?: string }) => {
      if (o.output === undefined && process.stdout.isTTY)
        throw new FsError(
          "EINVAL",
          "standard output is a terminal: redirect it, or write the stream with -o FILE",
        );
      const out: Writable = o.output
        ? createWriteStream(o.output, { mode: 0o600 })
        : process.stdout;
      let copied: Promise<unknown> = Promise.resolve(
        new FsError("EIO", "the store opened no data channel"),
      );
      try {
        const onProgress = progress("chunks", String);
        const sent = await withTarget(
          target,
          { onProgress, onChannel: (socket) => (copied = copy(socket, out)) },
          (call) => call("snapshot.send", { snapshot: snap, from: o.from, progress: !!onProgress }),
        );
        const failed = await copied;
        if (failed) throw failed;
        if (o.output !== undefined)
          print(
            `sent ${sent.snapshot}${sent.base ? ` from ${sent.base}` : ""} to ${o.output}: ` +
              `${formatBytes(sent.bytes)}, ${sent.dataChunks} chunks of data, ${sent.zeroChunks} of zeros`,
          );
      } catch (e) {
        if (o.output !== undefined) await unlink(o.output).catch(() => undefined);
        throw e;
      }
    });
}

function receiveCommand(snapshot: Command): void {
  snapshot
    .command("receive")
    .description(
      "make a stream into a new store (a full stream) or apply it to a store whose newest " +
        "snapshot is its base (an incremental one); nothing changes unless it checks whole",
    )
    .argument("<store>")
    .option("-i, --input <file>", "read the stream from FILE, not from standard input")
    .option("--force", "keep the store's production in a snapshot if it changed, and receive")
    .option("--abort", "discard what an interrupted receive left in STORE")
    .option("--json", "print JSON")
    .action(
      async (
        store: string,
        o: { input?: string; force?: boolean; abort?: boolean; json?: boolean },
      ) => {
        const receive = await import("../../daemon/receive.js");
        if (o.abort) {
          const path = await resolveTarget(store).then(
            (t) => t.store,
            () => resolve(store),
          );
          const had = await receive.abortReceive(path);
          print(
            had
              ? `discarded an interrupted receive in ${path}`
              : `no receive to discard in ${path}`,
          );
          return;
        }
        if (o.input === undefined && process.stdin.isTTY)
          throw new FsError(
            "EINVAL",
            "standard input is a terminal: pipe a stream in, or read one with -i FILE",
          );
        const { peekHeader } = await import("../../cow/index.js");
        const input = o.input ? createReadStream(o.input) : process.stdin;
        const { header, stream } = await peekHeader(input);
        let result: ReceiveResult;
        if (!header.base) result = await receive.receiveNew(store, stream);
        else {
          const { store: path } = await resolveTarget(store);
          let copied: Promise<unknown> = Promise.resolve();
          const backend = await connect(path, {
            write: true,
            onChannel: (socket) => (copied = copy(Readable.from(stream), socket)),
          });
          try {
            result = await backend.call("snapshot.receive", { force: o.force ?? false });
          } finally {
            await backend.close();
          }
          // The store has checked the stream to its end: a copy that failed would have cut it.
          await copied;
        }
        if (o.json) json(result);
        else {
          print(`received ${result.snapshot} into ${result.store}`);
          if (result.saved) print(`production as it was is kept in ${result.saved}`);
        }
      },
    );
}

/** Adds `snapshot send` and `snapshot receive` to the `snapshot` command. */
export function transportCommands(snapshot: Command): void {
  sendCommand(snapshot);
  receiveCommand(snapshot);
}
