// The verbs of what history keeps: `get` and `set` of a volume's properties, and `snapshot hold`,
// `release` and `cleanup`. Each parses, asks the store and prints; the rules live in the daemon.

import type { Command } from "commander";
import { withTarget } from "../connect.js";
import { formatBytes, json, print, table } from "../format.js";

export function retentionCommands(cli: Command, snapshot: Command): void {
  cli
    .command("get")
    .description("show the volume's properties (all, or those named)")
    .argument("<target>")
    .argument("[properties...]")
    .option("--json", "print JSON")
    .action(async (target: string, properties: string[], o) => {
      const values = await withTarget(target, {}, (call) => call("get", { properties }));
      if (o.json) json(values);
      else
        print(
          table(
            ["PROPERTY", "VALUE", "SOURCE"],
            values.map((v) => [v.property, v.value, v.source]),
          ),
        );
    });

  cli
    .command("set")
    .description(
      "set properties: shadow-storage-limit, on-full, timeline, timeline-interval, keep-hourly, " +
        "keep-daily, keep-weekly, keep-monthly, keep-yearly, keep-empty, cleanup-free",
    )
    .argument("<target>")
    .argument("<assignments...>", "PROPERTY=VALUE")
    .action(async (target: string, assignments: string[]) => {
      const values = await withTarget(target, { write: true }, (call) =>
        call("set", { assignments }),
      );
      for (const v of values) print(`${v.property}=${v.value}`);
    });

  snapshot
    .command("hold")
    .description("pin a snapshot: nothing deletes it (delete, cleanup, the storage limit)")
    .argument("<target>")
    .argument("<snapshot>", "@GMT name, name or id")
    .option("--tag <tag>", "the hold's name; a snapshot may have several", "hold")
    .action(async (target: string, ref: string, o) => {
      const row = await withTarget(target, { write: true }, (call) =>
        call("snapshot.hold", { snapshot: ref, tag: o.tag }),
      );
      print(`${row.gmt} held (${row.holds.join(", ")})`);
    });

  snapshot
    .command("release")
    .description("take a hold off a snapshot")
    .argument("<target>")
    .argument("<snapshot>", "@GMT name, name or id")
    .option("--tag <tag>", "the hold to take off", "hold")
    .action(async (target: string, ref: string, o) => {
      const row = await withTarget(target, { write: true }, (call) =>
        call("snapshot.release", { snapshot: ref, tag: o.tag }),
      );
      print(`${row.gmt} ${row.holds.length ? `still held (${row.holds.join(", ")})` : "not held"}`);
    });

  snapshot
    .command("cleanup")
    .description("apply the retention rules now: timeline limits, then cleanup-free")
    .argument("<target>")
    .option("--dry-run", "say what would be deleted, delete nothing")
    .option("--json", "print JSON")
    .action(async (target: string, o) => {
      const r = await withTarget(target, { write: !o.dryRun }, (call) =>
        call("snapshot.cleanup", { dryRun: o.dryRun === true }),
      );
      if (o.json) {
        json(r);
        return;
      }
      const verb = r.dryRun ? "would delete" : "deleted";
      for (const d of r.deleted)
        print(`${verb} ${d.gmt} (${formatBytes(d.exclusiveBytes)}): ${d.rule}`);
      for (const s of r.skipped) print(`kept ${s.gmt}: ${s.reason}`);
      if (r.deleted.length === 0) print("nothing to delete");
    });
}
