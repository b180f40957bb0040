// The `snapshot diff` verb: asks the store what changed between two points and prints one line a
// change (or JSON). It finds nothing out by itself.

import type { Command } from "commander";
import type { DiffChange } from "../../daemon/index.js";
import { withTarget } from "../connect.js";
import { json, print } from "../format.js";

const MARK = { added: "+", removed: "-", modified: "M", renamed: "R" } as const;

/** A path as one line: backslash, control characters and DEL as \ooo (as `zfs diff` does). */
export const escapePath = (path: string): string =>
  path.replace(
    // biome-ignore lint/suspicious/noControlCharactersInRegex: those are what it escapes
    /[\\\u0000-\u001f\u007f]/g,
    (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, "0")}`,
  );

export function diffLine(c: DiffChange): string {
  const path = escapePath(c.path);
  return c.change === "renamed"
    ? `R ${escapePath(c.from ?? "")} -> ${path}`
    : `${MARK[c.change]} ${path}`;
}

export function diffCommand(snapshot: Command): void {
  snapshot
    .command("diff")
    .description(
      "what changed from FROM to TO (snapshots, or production; TO defaults to production): " +
        "+ added, - removed, M modified, R renamed, one line each, sorted by path",
    )
    .argument("<target>")
    .argument("<from>", "@GMT name, name or id, or production")
    .argument("[to]", "@GMT name, name or id, or production", "production")
    .option("--json", "print JSON")
    .action(async (target: string, from: string, to: string, o) => {
      const changes = await withTarget(target, {}, (call) => call("snapshot.diff", { from, to }));
      if (o.json) json(changes);
      else if (changes.length > 0) print(changes.map(diffLine).join("\n"));
    });
}
