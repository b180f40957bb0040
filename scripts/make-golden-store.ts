// Builds the golden store of format version 1 (test/fixtures/golden-store-v1) from the recipe in
// test/helpers/golden-pattern.ts. It never overwrites an existing fixture unless given --force.
//
// Usage: tsx scripts/make-golden-store.ts [--force]
// The catalog holds a random uuid and the volume's creation time: the fixture is made once and
// committed; regenerating it is a deliberate change to review, not a build step.

import { rm } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CowVolume, checkStore, NodeHostFs } from "../src/cow/index.js";
import {
  GOLDEN_DIR,
  GOLDEN_PLAN,
  GOLDEN_SETTINGS,
  goldenPattern,
} from "../test/helpers/golden-pattern.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const target = join(root, GOLDEN_DIR);
const staging = `${target}.new`;
const host = new NodeHostFs();

async function main(): Promise<number> {
  const force = process.argv.includes("--force");
  if ((await host.exists(target)) && !force) {
    console.error(
      `golden: ${relative(root, target)} exists; a new one changes every file of it (pass --force to replace it)`,
    );
    return 1;
  }
  await rm(staging, { recursive: true, force: true });
  const vol = await CowVolume.create(host, staging, GOLDEN_SETTINGS);
  for (const step of GOLDEN_PLAN) {
    if (step.op === "snapshot") {
      await vol.createSnapshot({ name: step.name, createdAt: step.createdAt });
    } else {
      await vol.write(step.offset, goldenPattern(step.gen, step.offset, step.length));
    }
  }
  await vol.flush();
  const snapshots = vol.snapshots();
  await vol.close();

  const report = await checkStore(host, staging);
  if (!report.ok || report.notes.length > 0) {
    console.error(`golden: the new store does not check clean: ${JSON.stringify(report)}`);
    return 1;
  }
  await rm(target, { recursive: true, force: true });
  await host.rename(staging, target);
  await host.syncDir(dirname(target));
  console.log(`golden: wrote ${relative(root, target)}`);
  for (const s of snapshots) {
    console.log(`golden: snapshot ${s.id} ${s.name}: diff area ${s.diffAreaBytes} bytes`);
  }
  return 0;
}

process.exitCode = await main();
