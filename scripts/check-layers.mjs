#!/usr/bin/env node
// Checks that imports between src/ layers go downward only:
// cli → daemon → snapshot → mount → fs → cow (a layer may import any layer below it).
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const order = ["cow", "fs", "mount", "snapshot", "daemon", "cli"];
const root = resolve(dirname(new URL(import.meta.url).pathname), "..", "src");

function* files(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* files(p);
    else if (p.endsWith(".ts")) yield p;
  }
}

const layerOf = (file) => relative(root, file).split("/")[0] ?? "";
const bad = [];
for (const file of files(root)) {
  const from = layerOf(file);
  const src = readFileSync(file, "utf8");
  for (const m of src.matchAll(/^\s*(?:import|export)[^"']*["'](\.[^"']+)["']/gm)) {
    const target = layerOf(resolve(dirname(file), m[1]));
    const a = order.indexOf(from);
    const b = order.indexOf(target);
    if (a >= 0 && b > a) bad.push(`${relative(root, file)} imports ${m[1]} (${from} → ${target})`);
  }
}
if (bad.length > 0) {
  console.error(`layer check: imports must go downward only\n${bad.join("\n")}`);
  process.exit(1);
}
console.log("layer check: ok");
