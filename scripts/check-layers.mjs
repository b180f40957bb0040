#!/usr/bin/env node
// Checks that imports between src/ layers go downward only:
// cli → daemon → snapshot → mount → fs → cow (a layer may import any layer below it).
// Every relative import counts: static ones (`import`, `import type`, `export … from`) and
// dynamic ones with a literal path (`import("../x.js")`, `await import(…)`, type `import(…).T`).
// Within a layer, imports must not go round in a circle (type-only ones included): each is printed.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
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

/** The source file an import of `spec` from `file` loads (`./x.js` is `./x.ts`), if there is one. */
function sourceOf(file, spec) {
  const p = resolve(dirname(file), spec);
  const stem = p.replace(/\.(js|mjs|ts)$/, "");
  for (const c of [`${stem}.ts`, join(p, "index.ts")]) if (existsSync(c)) return c;
  return undefined;
}

const bad = [];
/** Imports between files of one layer: file → the files it imports. */
const within = new Map();
for (const file of files(root)) {
  const from = layerOf(file);
  within.set(file, []);
  for (const spec of importsOf(readFileSync(file, "utf8"))) {
    const target = layerOf(resolve(dirname(file), spec));
    const a = order.indexOf(from);
    const b = order.indexOf(target);
    if (a >= 0 && b > a) bad.push(`${relative(root, file)} imports ${spec} (${from} → ${target})`);
    const to = sourceOf(file, spec);
    if (to && to !== file && target === from) within.get(file).push(to);
  }
}

/** Strongly connected parts of the import graph with more than one file (Tarjan). */
function circles(graph) {
  const index = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const found = [];
  let next = 0;
  const visit = (v) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)));
    }
    if (low.get(v) !== index.get(v)) return;
    const part = [];
    for (let w; w !== v; ) {
      w = stack.pop();
      onStack.delete(w);
      part.push(w);
    }
    if (part.length > 1) found.push(part.sort());
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return found;
}

/** The shortest way from `start` back to itself inside `part`: one circle to show. */
function circleThrough(start, part, graph) {
  const inside = new Set(part);
  const via = new Map([[start, undefined]]);
  for (const queue = [start]; queue.length > 0; ) {
    const v = queue.shift();
    for (const w of graph.get(v) ?? []) {
      if (w === start) {
        const path = [start];
        for (let u = v; u !== start; u = via.get(u)) path.splice(1, 0, u);
        return [...path, start];
      }
      if (inside.has(w) && !via.has(w)) {
        via.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start];
}

/** For each circle of files, its shortest circles, until every file in it has been shown. */
const circled = circles(within).flatMap((part) => {
  const shown = [];
  const covered = new Set();
  for (const file of part) {
    if (covered.has(file)) continue;
    const circle = circleThrough(file, part, within);
    for (const f of circle) covered.add(f);
    shown.push(`${layerOf(file)}: ${circle.map((f) => relative(root, f)).join(" → ")}`);
  }
  return shown;
});

if (bad.length > 0) console.error(`layer check: imports must go downward only\n${bad.join("\n")}`);
if (circled.length > 0)
  console.error(`layer check: imports within a layer go round in a circle\n${circled.join("\n")}`);
if (bad.length > 0 || circled.length > 0) process.exit(1);
console.log("layer check: ok");
