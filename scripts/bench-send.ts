// Benchmark of snapshot streams on a real mounted volume: a full `snapshot send` of a volume
// filled with data, to a file, against `cat` of the same store's base image to a file; `snapshot
// receive` of that stream into a new store against `cp` of the stream file (each followed by a
// sync of what it wrote: a receive is durable when it returns); and an incremental send with 1%
// of the volume changed, its time and its bytes against the bytes changed. Caches are dropped
// before each timed run. It owns one temporary directory (under --dir, default /var/tmp), and
// unmounts everything it mounted and removes that directory at exit, also on SIGINT and SIGTERM.

import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  benchName,
  COMMON_OPTIONS,
  changeOnePercent,
  diskFree,
  filledVolume,
  fmt,
  makeWork,
  notes,
  positive,
  printReport,
  removeWork,
  round,
  run,
  runBench,
  say,
  sayShadowfsCommand,
  shadowfs,
  timedInTurn,
  timedPasses,
  unmountAll,
  VOLUME_OPTIONS,
} from "./bench-common.js";

benchName("bench-send");
const { values: opt } = parseArgs({
  options: {
    ...COMMON_OPTIONS,
    ...VOLUME_OPTIONS,
  },
});
const passes = positive("--passes", opt.passes, true);
const sizeMiB = positive("--size-mib", opt["size-mib"], true);
const MiB = 2 ** 20;

interface Results {
  volumeBytes: number;
  streamBytes: number;
  sendSec: number;
  catSec: number;
  sendVsCat: number;
  receiveSec: number;
  cpSec: number;
  receiveVsCp: number;
  incrementalMs: number;
  incrementalBytes: number;
  changedBytes: number;
}

async function main(): Promise<Results> {
  const work = await makeWork(opt.dir);
  if ((await diskFree(work)) < sizeMiB * MiB * 5)
    throw new Error(`${work} needs ${sizeMiB * 5} MiB free: a volume, a copy and two streams`);
  sayShadowfsCommand();
  const volume = await filledVolume(sizeMiB);
  const { store, mnt } = volume;

  const stream = join(work, "full.stream");
  const image = join(work, "base.copy");
  say("full send against cat of the base image");
  const [sendSec, catSec] = await timedInTurn(passes, [
    { run: () => shadowfs(["snapshot", "send", mnt, "a", "-o", stream]) },
    { run: () => run("bash", ["-c", `cat ${store}/volume/base.img > ${image}`]) },
  ]);
  const streamBytes = Number((await run("stat", ["-c", "%s", stream])).stdout.trim());

  say("receive against cp of the stream");
  const received = join(work, "received");
  const copy = join(work, "stream.copy");
  const [receiveSec, cpSec] = await timedInTurn(passes, [
    {
      run: () => shadowfs(["snapshot", "receive", received, "-i", stream]),
      before: () => run("rm", ["-rf", received]),
    },
    { run: () => run("bash", ["-c", `cp ${stream} ${copy} && sync ${copy}`]) },
  ]);

  say("incremental send, 1% changed");
  const changedBytes = await changeOnePercent(volume, sizeMiB);
  const inc = join(work, "inc.stream");
  const incrementalSec = await timedPasses(passes, () =>
    shadowfs(["snapshot", "send", mnt, "b", "--from", "a", "-o", inc]),
  );
  const incrementalBytes = Number((await run("stat", ["-c", "%s", inc])).stdout.trim());
  notes.push(
    "send and receive are timed as the command runs them, start-up included; the receive " +
      "syncs what it wrote before it returns, so cp is followed by a sync of its copy",
  );
  return {
    volumeBytes: sizeMiB * MiB,
    streamBytes,
    sendSec: round(sendSec, 3)!,
    catSec: round(catSec, 3)!,
    sendVsCat: round(catSec / sendSec, 2)!,
    receiveSec: round(receiveSec, 3)!,
    cpSec: round(cpSec, 3)!,
    receiveVsCp: round(cpSec / receiveSec, 2)!,
    incrementalMs: round(incrementalSec * 1000, 1)!,
    incrementalBytes,
    changedBytes,
  };
}

await runBench(
  main,
  async () => {
    await unmountAll();
    await removeWork(opt.keep);
  },
  (r) =>
    printReport(
      opt.json,
      `volume ${sizeMiB} MiB, 85% written; medians of ${passes} passes, each side in turn, caches dropped before each`,
      r,
      () => [
        `full send:  ${fmt(r.sendSec, 2)} s; cat of the base image: ${fmt(r.catSec, 2)} s; send vs cat ${fmt(r.sendVsCat, 2)} (stream ${fmt(r.streamBytes / MiB, 0)} MiB)`,
        `receive:    ${fmt(r.receiveSec, 2)} s; cp of the stream: ${fmt(r.cpSec, 2)} s; receive vs cp ${fmt(r.receiveVsCp, 2)}`,
        `incremental send, ${fmt(r.changedBytes / MiB, 0)} MiB changed: ${fmt(r.incrementalMs)} ms, ${fmt(r.incrementalBytes / MiB, 2)} MiB (${fmt(r.incrementalBytes / r.changedBytes, 2)}x the bytes changed)`,
      ],
    ),
);
