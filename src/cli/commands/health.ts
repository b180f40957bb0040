// The verbs that say how a store is doing: its shadow storage (`storage`) and its soundness
// (`fsck`). They only read and print; they never repair, delete or change a store.

import type { Command } from "commander";
import { withTarget } from "../connect.js";
import { formatBytes, json, print, progress, table } from "../format.js";

export function healthCommands(cli: Command): void {
  cli
    .command("storage")
    .description("shadow storage: used, limit, per snapshot, evictions")
    .argument("<target>")
    .option("--json", "print JSON")
    .action(async (target: string, o) => {
      const r = await withTarget(target, {}, (call) => call("storage"));
      if (o.json) {
        json(r);
        return;
      }
      print(
        `used ${formatBytes(r.usedBytes)} of ${r.limitBytes ? formatBytes(r.limitBytes) : "no limit"}; when full: ${r.onFull}`,
      );
      if (r.snapshots.length)
        print(
          table(
            ["SNAPSHOT", "ALIAS", "DIFF AREA", "EXCLUSIVE", "HOLDS"],
            r.snapshots.map((s) => [
              s.gmt,
              s.name ?? "-",
              formatBytes(s.diffAreaBytes),
              formatBytes(s.exclusiveBytes),
              s.holds.length ? s.holds.join(",") : "-",
            ]),
          ),
        );
      for (const e of r.evictions)
        print(`evicted ${e.gmt}${e.name ? ` (${e.name})` : ""} at ${e.evictedAt}: ${e.reason}`);
    });

  cli
    .command("fsck")
    .description("check a store's files and filesystem (or one snapshot's)")
    .argument("<store>")
    .option("--snapshot <snapshot>", "check this snapshot's filesystem")
    .option("--json", "print JSON")
    .action(async (target: string, o) => {
      const r = await withTarget(target, { onProgress: progress("checking chunks") }, (call) =>
        call("fsck", { snapshot: o.snapshot }),
      );
      if (o.json) json(r);
      else {
        for (const p of r.store?.problems ?? []) print(`store: ${p}`);
        for (const n of r.store?.notes ?? []) print(`note: ${n}`);
        for (const p of r.fs.problems) print(`filesystem: ${p}`);
        print(
          `${r.checked}: ${r.ok ? "clean" : "DAMAGED"} (${r.fs.directories} directories, ${r.fs.files} files)`,
        );
      }
      // Exit status 2: the store is damaged (1 is for a check that could not run).
      if (!r.ok) process.exitCode = 2;
    });
}
