// The copy-on-write layer's files import one another without a circle (type-only imports count):
// each part can be read, tested and replaced from the bottom up. It checks imports only.

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const DIR = join(import.meta.dirname, "../../src/cow");

/** Relative imports and re-exports of each file, as file names. */
function graph(): Map<string, string[]> {
  const g = new Map<string, string[]>();
  for (const name of readdirSync(DIR).filter((f) => f.endsWith(".ts"))) {
    const text = readFileSync(join(DIR, name), "utf8");
    const deps = [...text.matchAll(/(?:import|export)\s[^;]*?from\s+"\.\/([^"]+)\.js"/g)].map(
      (m) => `${m[1]}.ts`,
    );
    g.set(name, deps);
  }
  return g;
}

/** Every import circle, as the path around it. */
function cycles(g: Map<string, string[]>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (f: string) => {
    state.set(f, "open");
    path.push(f);
    for (const d of g.get(f) ?? []) {
      if (state.get(d) === "open") found.push([...path.slice(path.indexOf(d)), d]);
      else if (!state.has(d)) visit(d);
    }
    path.pop();
    state.set(f, "done");
  };
  for (const f of g.keys()) if (!state.has(f)) visit(f);
  return found;
}

describe("imports inside src/cow", () => {
  it("form no circle", () => {
    const g = graph();
    expect(g.get("volume.ts")?.length).toBeGreaterThan(0); // the scan sees imports at all
    expect(cycles(g).map((c) => c.join(" -> "))).toEqual([]);
  });

  it("the copy-on-write policy and the snapshot view know nothing of the volume", () => {
    const g = graph();
    for (const f of ["write-back.ts", "snapshot-device.ts", "snapshot-read.ts", "chunk-store.ts"])
      expect(g.get(f), f).not.toContain("volume.ts");
  });
});
