// The verbs about a volume's writers, the applications that quiesce around a snapshot: they list
// what the volume knows of them. They never run a writer or a snapshot protocol step.

import type { Command } from "commander";
import { withTarget } from "../connect.js";
import { json, print, table } from "../format.js";

export function writerCommands(cli: Command): void {
  const writers = cli.command("writers").description("writers of a volume");

  writers
    .command("list")
    .argument("<target>")
    .option("--json", "print JSON")
    .action(async (target: string, o) => {
      const r = await withTarget(target, {}, (call) => call("writers.list"));
      if (o.json) {
        json(r);
        return;
      }
      if (r.writers.length === 0) print("no writers");
      else
        print(
          table(
            ["WRITER", "KIND", "PATHS", "RESTORE", "LAST"],
            r.writers.map((w) => [
              w.name,
              w.kind,
              w.paths.join(",") || "-",
              w.restore,
              w.last
                ? `${w.last.event} ${w.last.ok ? "ok" : `failed: ${w.last.reason}`}`
                : w.identified === "ok"
                  ? "-"
                  : `identify failed: ${w.identified}`,
            ]),
          ),
        );
      for (const p of r.problems) print(`problem: writers.d/${p.entry}: ${p.problem}`);
    });
}
