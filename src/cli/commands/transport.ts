// The verbs that move snapshots between stores: `snapshot send`, `snapshot receive`, `snapshot
// clone` and `replicate`. Each parses, moves a stream (transfer.ts) and prints; none reads one.

import { resolve } from "node:path";
import type { Command } from "commander";
import type { ReceiveResult } from "../../daemon/receive.js";
import { isRemoteUrl, parseRemoteUrl } from "../../daemon/remote/url.js";
import type { SnapshotRow } from "../../daemon/reports.js";
import { FsError } from "../../errors.js";
import { resolveTarget, withTarget } from "../connect.js";
import { formatBytes, json, print, progress } from "../format.js";
import { applyStream, copy, sendTo } from "../transfer.js";

const receiving = () => import("../../daemon/receive.js");

interface SendOptions {
  from?: string;
  resume?: string;
  output?: string;
}

function sendCommand(snapshot: Command): void {
  snapshot
    .command("send")
    .description(
      "write a snapshot as a stream: every chunk in use, or with --from only the chunks that " +
        "differ from an older snapshot",
    )
    .argument("<target>")
    .argument("[snapshot]", "the snapshot to send (none with --resume)")
    .option("--from <base>", "an older snapshot: send only what changed since it")
    .option("--resume <token>", "the rest of a stream whose receive was cut (its token)")
    .option("-o, --output <file>", "write the stream to FILE, not to standard output")
    .action(async (target: string, snap: string | undefined, o: SendOptions) => {
      if (o.output === undefined && process.stdout.isTTY)
        throw new FsError(
          "EINVAL",
          "standard output is a terminal: redirect it, or write the stream with -o FILE",
        );
      const onProgress = progress("chunks");
      const params = {
        snapshot: snap,
        from: o.from,
        resume: o.resume,
        progress: onProgress !== undefined,
      };
      if (o.output === undefined) {
        // Through a data channel, to standard output.
        await sendTo(
          target,
          params,
          async (stream) => {
            const failed = await copy(stream, process.stdout);
            if (failed) throw failed;
          },
          onProgress,
        );
        return;
      }
      // The store writes the file itself.
      const output = resolve(o.output);
      const sent = await withTarget(target, { onProgress }, (call) =>
        call("snapshot.send", { ...params, output }),
      );
      print(
        `sent ${sent.snapshot}${sent.base ? ` from ${sent.base}` : ""} to ${output}: ` +
          `${formatBytes(sent.bytes)}, ${sent.dataChunks} chunks of data, ${sent.zeroChunks} of zeros`,
      );
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
    .option(
      "--from <url>",
      "make a new store from object storage: s3://BUCKET/PREFIX (every snapshot there) or s3://BUCKET/PREFIX@SNAPSHOT",
    )
    .option("--endpoint <url>", "the S3 endpoint for --from")
    .option("--force", "keep the store's production in a snapshot if it changed, and receive")
    .option("--abort", "discard what an interrupted receive left in STORE")
    .option("--token", "print the token that resumes the receive interrupted in STORE")
    .option("--json", "print JSON")
    .action(
      async (
        store: string,
        o: {
          input?: string;
          from?: string;
          endpoint?: string;
          force?: boolean;
          abort?: boolean;
          token?: boolean;
          json?: boolean;
        },
      ) => {
        if (o.from !== undefined) return receiveRemote(store, o.from, o);
        const { abortReceive, receiveNew, resumeToken } = await receiving();
        const path = () =>
          resolveTarget(store).then(
            (t) => t.store,
            () => resolve(store),
          );
        if (o.abort) {
          const dir = await path();
          const had = await abortReceive(dir);
          print(
            had ? `discarded an interrupted receive in ${dir}` : `no receive to discard in ${dir}`,
          );
          return;
        }
        if (o.token) {
          const dir = await path();
          const token = await resumeToken(dir);
          if (token === undefined)
            throw new FsError("ENOENT", `no interrupted receive to resume in ${dir}`);
          print(token);
          return;
        }
        if (o.input === undefined && process.stdin.isTTY)
          throw new FsError(
            "EINVAL",
            "standard input is a terminal: pipe a stream in, or read one with -i FILE",
          );
        const { peekHeader, readFileAhead } = await import("../../cow/index.js");
        const input = o.input ? readFileAhead(o.input) : process.stdin;
        const { header, stream } = await peekHeader(input);
        const result: ReceiveResult = header.base
          ? await applyStream(store, stream, o.force ?? false)
          : await receiveNew(store, stream);
        if (o.json) json(result);
        else {
          print(`received ${result.snapshot} into ${result.store}`);
          if (result.saved) print(`production as it was is kept in ${result.saved}`);
        }
      },
    );
}

/** `snapshot receive STORE --from s3://…`: a new store from the snapshots in object storage. */
async function receiveRemote(
  store: string,
  from: string,
  o: { input?: string; endpoint?: string; json?: boolean },
): Promise<void> {
  if (o.input !== undefined) throw new FsError("EINVAL", "give --from or -i, not both");
  const { receiveFromRemote } = await import("../remote.js");
  const r = await receiveFromRemote(resolve(store), parseRemoteUrl(from), o.endpoint);
  if (o.json) {
    json(r);
    return;
  }
  for (const x of r.received) print(`received ${x.snapshot} into ${r.store}`);
}

function cloneCommand(snapshot: Command): void {
  snapshot
    .command("clone")
    .description(
      "make a new, independent store whose production is a copy of the snapshot (it shares " +
        "nothing with the source afterwards)",
    )
    .argument("<target>")
    .argument("<snapshot>")
    .argument("<newstore>")
    .option("--mount <mountpoint>", "and mount the new store there")
    .option("--json", "print JSON")
    .action(async (target: string, snap: string, newstore: string, o) => {
      const { receiveNew } = await receiving();
      const { sent, result } = await sendTo(
        target,
        { snapshot: snap },
        (stream) => receiveNew(newstore, stream, { keepSnapshot: false }),
        progress("chunks"),
      );
      if (!o.json) print(`cloned ${sent.snapshot} into ${result.store}`);
      if (o.mount) {
        const { mountStore } = await import("../launch.js");
        await mountStore({
          store: result.store,
          mountpoint: resolve(o.mount),
          options: undefined,
          foreground: false,
          readyFd: undefined,
          // With --json, standard output holds the JSON alone.
          ...(o.json ? { say: (line: string) => process.stderr.write(`${line}\n`) } : {}),
        });
      }
      if (o.json)
        json({
          store: result.store,
          from: sent.snapshot,
          bytes: sent.bytes,
          mountpoint: o.mount ? resolve(o.mount) : null,
        });
    });
}

function replicateCommand(cli: Command): void {
  cli
    .command("replicate")
    .description(
      "bring DEST (a store, or a new path) up to SOURCE's newest snapshot: one incremental " +
        "stream from their newest common snapshot, or a full one when they have none",
    )
    .argument("<source>")
    .argument("<dest>", "a store, a new path, or object storage: s3://BUCKET/PREFIX")
    .option("--endpoint <url>", "the S3 endpoint for an s3:// DEST")
    .option("--json", "print JSON")
    .action(async (source: string, dest: string, o: { json?: boolean; endpoint?: string }) => {
      if (isRemoteUrl(dest)) return replicateRemote(source, dest, o);
      const rows = (target: string) =>
        withTarget(target, {}, (call) => call("snapshot.list", { settle: false }));
      const have = await rows(source);
      const newest = have.at(-1);
      if (!newest) throw new FsError("EINVAL", `${source} has no snapshot: take one first`);
      const existing = await resolveTarget(dest).then(
        () => true,
        () => false,
      );
      const there: SnapshotRow[] = existing ? await rows(dest) : [];
      const report = (sent: { base: string | null; bytes: number } | null) => {
        const r = {
          source,
          dest,
          snapshot: newest.gmt,
          from: sent?.base ?? null,
          upToDate: sent === null,
          bytes: sent?.bytes ?? 0,
        };
        if (o.json) json(r);
        else if (!sent) print(`${dest} is up to date: it has ${newest.gmt}`);
        else
          print(
            `sent ${newest.gmt}${sent.base ? ` from ${sent.base}` : " whole"} to ${dest}: ${formatBytes(sent.bytes)}`,
          );
      };
      if (there.some((r) => r.guid === newest.guid)) return report(null);
      const common = have.filter((r) => there.some((d) => d.guid === r.guid)).at(-1);
      if (existing && !common)
        throw new FsError(
          "EEXIST",
          `${dest} has no snapshot in common with ${source}: replicate into a new path`,
        );
      const { receiveNew } = await receiving();
      const { sent } = await sendTo(
        source,
        { snapshot: String(newest.id), from: common ? String(common.id) : undefined },
        (stream) => (common ? applyStream(dest, stream, false) : receiveNew(dest, stream)),
        progress("chunks"),
      );
      report(sent);
    });
}

/** `replicate SOURCE s3://…`: every snapshot object storage lacks, sent there. */
async function replicateRemote(
  source: string,
  dest: string,
  o: { json?: boolean; endpoint?: string },
): Promise<void> {
  const url = parseRemoteUrl(dest);
  if (url.snapshot !== undefined)
    throw new FsError(
      "EINVAL",
      `${dest}: replicate to a place (s3://BUCKET/PREFIX), not a snapshot`,
    );
  const { replicateToRemote } = await import("../remote.js");
  const r = await replicateToRemote(source, url, o.endpoint);
  if (o.json) {
    json(r);
    return;
  }
  if (r.upToDate) {
    print(`${r.dest} is up to date: it has every snapshot of ${source}`);
    return;
  }
  for (const x of r.sent)
    print(
      `sent ${x.snapshot}${x.from ? ` from ${x.from}` : " whole"} to ${r.dest}: ` +
        `${x.newChunks} new chunks in ${x.packs} packs (${formatBytes(x.bytes)}), ${x.reusedChunks} already there`,
    );
}

/** Adds `snapshot send`, `receive` and `clone` to the `snapshot` command, and `replicate`. */
export function transportCommands(cli: Command, snapshot: Command): void {
  sendCommand(snapshot);
  receiveCommand(snapshot);
  cloneCommand(snapshot);
  replicateCommand(cli);
}
