// The `snapshot` verbs: create (through the requester), history, list, delete, revert, expose,
// unexpose. Each parses, asks the store and prints; none holds protocol or store logic.

import { resolve } from "node:path";
import type { Command } from "commander";
import type { SnapshotRow } from "../../daemon/index.js";
import { lockHolder } from "../../daemon/lock.js";
import { FsError } from "../../errors.js";
import { resolveTarget, withTarget } from "../connect.js";
import { formatBytes, json, print, table } from "../format.js";
import { diffCommand } from "./diff.js";

export function snapshotTable(rows: SnapshotRow[]): string {
  return table(
    ["NAME", "ALIAS", "CREATED", "BY", "DIFF AREA", "EXCLUSIVE", "HOLDS", "SET"],
    rows.map((r) => [
      r.gmt,
      r.name ?? "-",
      r.createdAt,
      r.timeline ? "timeline" : "hand",
      formatBytes(r.diffAreaBytes),
      formatBytes(r.exclusiveBytes),
      r.holds.length ? r.holds.join(",") : "-",
      r.setId?.slice(0, 8) ?? "-",
    ]),
  );
}

function seconds(text: string, what: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0)
    throw new FsError("EINVAL", `${what} "${text}": expected a number of seconds above 0`);
  return Math.round(n * 1000);
}

/** Adds the `snapshot` verbs; returns the `snapshot` command, for verbs added elsewhere. */
export function snapshotCommands(cli: Command): Command {
  const snapshot = cli
    .command("snapshot")
    .description("create, list, delete, revert, expose snapshots");

  snapshot
    .command("create")
    .description(
      "take a snapshot: writers prepare and freeze, changes are held while it is committed; " +
        "with --set, one snapshot of each target at the same instant, all or none",
    )
    .argument("<targets...>")
    .option("--name <name>", "a name that also resolves to the snapshot")
    .option("--set", "several targets: one snapshot set")
    .option("--freeze-limit <seconds>", "from the first freeze to the last thaw, at most", "60")
    .option("--hold-limit <seconds>", "changes held for the commit, at most", "10")
    .option("--json", "print JSON")
    .action(async (targets: string[], o) => {
      if (targets.length > 1 && !o.set)
        throw new FsError("EINVAL", "several targets make a snapshot set: pass --set");
      const { snapshotSet } = await import("../requester.js");
      const { setId, rows } = await snapshotSet(targets, {
        name: o.name,
        freezeLimitMs: seconds(o.freezeLimit, "--freeze-limit"),
        holdLimitMs: seconds(o.holdLimit, "--hold-limit"),
      });
      if (o.set) {
        if (o.json) json({ setId, snapshots: rows });
        else {
          print(`snapshot set ${setId}`);
          for (const r of rows) print(`${r.volume} ${r.gmt}`);
        }
        return;
      }
      const { volume: _, ...row } = rows[0]!;
      if (o.json) json(row);
      else print(row.gmt);
    });

  snapshot
    .command("history")
    .description("every run of the snapshot protocol: writers' answers, hold time, result")
    .argument("<target>")
    .option("--json", "print JSON")
    .action(async (target: string, o) => {
      const h = await withTarget(target, {}, (call) => call("snapshot.history"));
      if (o.json) {
        json(h);
        return;
      }
      if (h.records.length === 0) print("no snapshot runs");
      else
        print(
          table(
            ["STARTED", "RESULT", "SNAPSHOT", "HOLD", "WRITERS", "REASON"],
            h.records.map((r) => [
              r.startedAt,
              r.result,
              r.snapshot?.gmt ?? "-",
              r.holdMs === null ? "-" : `${r.holdMs} ms`,
              String(r.writers.length),
              r.reason ?? "-",
            ]),
          ),
        );
      if (h.torn) print(`note: line ${h.torn.line} was cut short by a crash and is skipped`);
    });

  snapshot
    .command("list")
    .argument("<target>")
    .option("--json", "print JSON")
    .action(async (target: string, o) => {
      const rows = await withTarget(target, {}, (call) => call("snapshot.list"));
      if (o.json) json(rows);
      else print(rows.length ? snapshotTable(rows) : "no snapshots");
    });

  snapshot
    .command("delete")
    .argument("<target>")
    .argument("<snapshot>", "@GMT name, name or id")
    .action(async (target: string, ref: string) => {
      const row = await withTarget(target, { write: true }, (call) =>
        call("snapshot.delete", { snapshot: ref }),
      );
      print(`deleted ${row.gmt}${row.name ? ` (${row.name})` : ""}`);
    });

  snapshot
    .command("revert")
    .description(
      "make production what the snapshot holds; newer snapshots are kept, and production as it was is saved as a snapshot first",
    )
    .argument("<target>")
    .argument("<snapshot>", "@GMT name, name or id")
    .option("--force", "even while files are open in production")
    .option("--discard-newer", "delete the snapshots newer than it instead (nothing is saved)")
    .option("--json", "print JSON")
    .action(async (target: string, ref: string, o) => {
      if (process.stderr.isTTY) process.stderr.write(`reverting to ${ref}...\n`);
      const r = await withTarget(target, { write: true }, (call) =>
        call("snapshot.revert", {
          snapshot: ref,
          force: o.force === true,
          discardNewer: o.discardNewer === true,
        }),
      );
      if (o.json) {
        json(r);
        return;
      }
      print(`production is now ${r.reverted.gmt}`);
      if (r.saved)
        print(
          `production as it was is kept as ${r.saved.gmt} (${r.saved.name}); newer snapshots are kept`,
        );
      for (const d of r.discarded) print(`deleted newer snapshot ${d.gmt}`);
    });

  diffCommand(snapshot);

  snapshot
    .command("expose")
    .description("mount one snapshot read-only on a path of its own")
    .argument("<target>")
    .argument("<snapshot>")
    .argument("<mountpoint>")
    .action(async (target: string, ref: string, mountpoint: string) => {
      const mnt = resolve(mountpoint);
      const { checkMountpoint } = await import("../launch.js");
      await checkMountpoint(mnt);
      const { store } = await resolveTarget(target);
      if ((await lockHolder(store)) === undefined)
        throw new FsError("ENOTCONN", `${store} is not mounted`);
      const r = await withTarget(target, {}, (call) =>
        call("snapshot.expose", { snapshot: ref, mountpoint: mnt }),
      );
      print(`exposed ${r.gmt} on ${mnt}`);
    });

  snapshot
    .command("unexpose")
    .argument("<mountpoint>")
    .action(async (mountpoint: string) => {
      const { mount } = await resolveTarget(mountpoint);
      if (!mount?.snapshot) throw new FsError("EINVAL", `${mountpoint} is not an exposed snapshot`);
      await withTarget(mountpoint, {}, (call) =>
        call("snapshot.unexpose", { mountpoint: mount.mountpoint }),
      );
      print(`unexposed ${mount.mountpoint}`);
    });
  return snapshot;
}
