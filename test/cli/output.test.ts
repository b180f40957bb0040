// How the command line ends when its reader does: output to a closed pipe stops quietly with
// status 0, as `ls | head` does; and --version.

import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CLI, ok, run, scratchEachTest } from "../helpers/mounted.js";

const { fresh } = scratchEachTest();

describe("output", () => {
  it("--version prints the package's version", async () => {
    const { version } = JSON.parse(readFileSync("package.json", "utf8")) as { version: string };
    expect(await ok("--version")).toBe(`${version}\n`);
    expect(await ok("-V")).toBe(`${version}\n`);
  });

  it("a reader that goes away ends the command quietly with status 0", async () => {
    const s = await fresh();
    await ok("init", s.store, "--size", "64M");
    for (const args of ["status", "status --json", "snapshot list", "storage"]) {
      // `true` has exited before the command writes: every write meets a closed pipe.
      const out = run(
        `node ${CLI} ${args} ${s.store} 2>${s.dir}/err | true; echo "\${PIPESTATUS[0]}"; cat ${s.dir}/err`,
      );
      expect(out, args).toBe("0\n");
    }
    // The first line still reaches a reader that takes only that.
    expect(run(`set -o pipefail; node ${CLI} status ${s.store} | head -1`)).toMatch(/^store: /);
  });
});
