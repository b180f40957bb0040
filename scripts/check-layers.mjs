#!/usr/bin/env node
// Checks that imports between src/ layers go downward only:
// cli → daemon → snapshot → mount → fs → cow (a layer may import any layer below it).
// Every relative import counts: static ones (`import`, `import type`, `export … from`) and
// dynamic ones with a literal path (`import("../x.js")`, `await import(…)`, type `import(…).T`).
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

/** `import … from "./x.js"`, `import "./x.js"`, `export … from "./x.js"`, over several lines too. */
const STATIC = /^\s*(?:import|export)\s+(?:[^"';]*?\bfrom\s*)?["'](\.[^"']*)["']/gm;
/** `import("./x.js")`, as a statement, an expression or a type, the path a literal string. */
const DYNAMIC = /\bimport\s*\(\s*["'](\.[^"']*)["']\s*\)/g;

/** The relative paths `src` imports, in the order they appear, each once. */
function importsOf(src) {
  const found = [...src.matchAll(STATIC), ...src.matchAll(DYNAMIC)].sort(
    (a, b) => a.index - b.index,
  );
  return [...new Set(found.map((m) => m[1]))];
}

const layerOf = (file) => relative(root, file).split("/")[0] ?? "";
const bad = [];
for (const file of files(root)) {
  const from = layerOf(file);
  for (const spec of importsOf(readFileSync(file, "utf8"))) {
    const target = layerOf(resolve(dirname(file), spec));
    const a = order.indexOf(from);
    const b = order.indexOf(target);
    if (a >= 0 && b > a) bad.push(`${relative(root, file)} imports ${spec} (${from} → ${target})`);
  }
}
if (bad.length > 0) {
  console.error(`layer check: imports must go downward only\n${bad.join("\n")}`);
  process.exit(1);
}
console.log("layer check: ok");
