// The store checker: reads every file of a store without changing anything and reports each
// problem with the file and the place in it. It never repairs and never stops at the first problem.

import { join } from "node:path";
import { basePath, catalogPath } from "./catalog.js";
import { dataPath, indexPath, scanIndex } from "./diff-area.js";
import {
  type Catalog,
  crc,
  DATA_HEADER_SIZE,
  decodeAreaHeader,
  decodeCatalog,
  INDEX_HEADER_SIZE,
  RECORD_SIZE,
  ZERO_SLOT,
} from "./format.js";
import { type HostFs, readWholeFile } from "./host.js";

export interface StoreProblem {
  file: string;
  message: string;
}

export interface StoreReport {
  ok: boolean;
  problems: StoreProblem[];
  /** Things that are not damage: what the next open will recover. */
  notes: string[];
  snapshots: number;
  chunksChecked: number;
}

type Progress = (done: number, total: number) => void;

const newReport = (): StoreReport => ({
  ok: true,
  problems: [],
  notes: [],
  snapshots: 0,
  chunksChecked: 0,
});

/** Reads the catalog; a missing or damaged one is a problem, and undefined. */
async function readCatalog(
  host: HostFs,
  dir: string,
  report: StoreReport,
): Promise<Catalog | undefined> {
  if (!(await host.exists(catalogPath(dir)))) {
    report.problems.push({ file: "catalog", message: "missing: this is not a shadowfs store" });
    return undefined;
  }
  const cat = decodeCatalog(await readWholeFile(host, catalogPath(dir)));
  if (typeof cat === "string") {
    report.problems.push({ file: "catalog", message: cat });
    return undefined;
  }
  return cat;
}

/** Checks a store that no process has open. */
export async function checkStore(
  host: HostFs,
  dir: string,
  onProgress?: Progress,
): Promise<StoreReport> {
  const report = newReport();
  const cat = await readCatalog(host, dir, report);
  if (!cat) return finish(report);
  if (!cat.clean)
    report.notes.push("the store was not closed cleanly (open by a process, or it crashed)");
  await checkChain(host, dir, cat, report);

  const chunkCount = cat.volumeSize / cat.chunkSize;
  let done = 0;
  for (const [i, s] of cat.snapshots.entries()) {
    const exact = i < cat.snapshots.length - 1 || cat.clean;
    await checkArea(host, dir, s.id, s.records, exact, cat.chunkSize, chunkCount, report);
    onProgress?.(++done, cat.snapshots.length);
  }
  await noteStrays(host, dir, cat, report);
  return finish(report);
}

/**
 * Checks the store of an open volume while it is being written: each step runs inside `steady`,
 * which holds off snapshot creation, deletion and revert (not writes). The catalog and base image,
 * then every diff area but the newest, which takes the chunks writes preserve now; a snapshot
 * evicted to make room during its area's check is not reported.
 */
export async function checkOpenStore(
  host: HostFs,
  dir: string,
  steady: <T>(fn: () => Promise<T>) => Promise<T>,
  onProgress?: Progress,
): Promise<StoreReport> {
  const report = newReport();
  const first = await steady(async () => {
    const cat = await readCatalog(host, dir, report);
    if (cat) await checkChain(host, dir, cat, report);
    return cat;
  });
  if (!first) return finish(report);
  const ids = first.snapshots.slice(0, -1).map((s) => s.id);
  let done = 0;
  for (const id of ids) {
    await steady(async () => {
      const cat = await readCatalog(host, dir, newReport());
      const at = cat?.snapshots.findIndex((s) => s.id === id) ?? -1;
      if (!cat || at < 0 || at === cat.snapshots.length - 1) return;
      const area = newReport();
      const records = cat.snapshots[at]!.records;
      await checkArea(
        host,
        dir,
        id,
        records,
        true,
        cat.chunkSize,
        cat.volumeSize / cat.chunkSize,
        area,
      );
      const still = await readCatalog(host, dir, newReport());
      if (!still?.snapshots.some((s) => s.id === id)) return;
      report.problems.push(...area.problems);
      report.notes.push(...area.notes);
      report.chunksChecked += area.chunksChecked;
    });
    onProgress?.(++done, ids.length);
  }
  return finish(report);
}

/** The snapshot list's order and ids, and the base image's size. */
async function checkChain(
  host: HostFs,
  dir: string,
  cat: Catalog,
  report: StoreReport,
): Promise<void> {
  const problem = (file: string, message: string) => report.problems.push({ file, message });
  report.snapshots = cat.snapshots.length;
  if (cat.revert)
    report.notes.push(
      `a revert to snapshot ${cat.revert.to} is in progress; the next open completes it`,
    );

  if (!(await host.exists(basePath(dir)))) problem("base.img", "missing");
  else {
    const base = await host.open(basePath(dir), { readOnly: true });
    const size = await base.size();
    await base.close();
    if (size < cat.volumeSize)
      problem("base.img", `${size} bytes, the volume has ${cat.volumeSize}`);
  }

  let lastId = 0;
  for (const s of cat.snapshots) {
    if (s.id <= lastId) problem("catalog", `snapshot ${s.id} is out of order (after ${lastId})`);
    if (s.id >= cat.nextId)
      problem("catalog", `snapshot ${s.id} is not below the next id ${cat.nextId}`);
    lastId = s.id;
  }
}

/** Files in diff/ that belong to no snapshot: what the next open removes. */
async function noteStrays(
  host: HostFs,
  dir: string,
  cat: Catalog,
  report: StoreReport,
): Promise<void> {
  const owned = new Set(cat.snapshots.flatMap((s) => [`${s.id}.data`, `${s.id}.index`]));
  const files = (await host.exists(join(dir, "diff"))) ? await host.readdir(join(dir, "diff")) : [];
  for (const name of files) {
    if (!owned.has(name))
      report.notes.push(`diff/${name} belongs to no snapshot; the next open removes it`);
  }
}

async function checkArea(
  host: HostFs,
  dir: string,
  id: number,
  committed: number,
  exact: boolean,
  chunkSize: number,
  chunkCount: number,
  report: StoreReport,
): Promise<void> {
  const idxName = `diff/${id}.index`;
  const dataName = `diff/${id}.data`;
  for (const [path, name] of [
    [indexPath(dir, id), idxName],
    [dataPath(dir, id), dataName],
  ] as const) {
    if (!(await host.exists(path))) {
      report.problems.push({ file: name, message: `missing (snapshot ${id})` });
      return;
    }
  }
  const idx = await readWholeFile(host, indexPath(dir, id));
  const data = await host.open(dataPath(dir, id), { readOnly: true });
  try {
    const dataSize = await data.size();
    const head = Buffer.alloc(INDEX_HEADER_SIZE);
    await data.read(head, 0);
    for (const [name, h] of [
      [idxName, decodeAreaHeader(idx, "index")],
      [dataName, decodeAreaHeader(head, "data")],
    ] as const) {
      if (typeof h === "string") report.problems.push({ file: name, message: h });
      else if (h.areaId !== id)
        report.problems.push({ file: name, message: `header names diff area ${h.areaId}` });
      else if (h.chunkSize !== chunkSize)
        report.problems.push({
          file: name,
          message: `header chunk size ${h.chunkSize}, volume ${chunkSize}`,
        });
    }
    const dataSlots = Math.max(0, Math.ceil((dataSize - DATA_HEADER_SIZE) / chunkSize));
    const body = idx.subarray(Math.min(idx.length, INDEX_HEADER_SIZE));
    const scan = scanIndex(body, chunkCount, dataSlots);
    for (const p of scan.problems) report.problems.push({ file: idxName, message: p });
    if (scan.records < committed) {
      report.problems.push({
        file: idxName,
        message: `${committed} records are committed but only ${scan.records} are valid: damaged or truncated at record ${scan.records} (byte ${INDEX_HEADER_SIZE + scan.records * RECORD_SIZE})`,
      });
    }
    const extra = Math.ceil(body.length / RECORD_SIZE) - (exact ? committed : scan.records);
    if (extra > 0 && scan.records >= committed) {
      report.notes.push(
        `${idxName}: ${extra} records of an interrupted batch or merge; the next open drops them`,
      );
    }
    const buf = Buffer.alloc(chunkSize);
    for (const [chunk, e] of scan.entries) {
      if (e.slot === ZERO_SLOT) continue;
      await data.read(buf, DATA_HEADER_SIZE + e.slot * chunkSize);
      if (crc(buf) !== e.dataCrc) {
        report.problems.push({
          file: dataName,
          message: `slot ${e.slot} (chunk ${chunk}): checksum mismatch`,
        });
      }
      report.chunksChecked++;
    }
  } finally {
    await data.close();
  }
}

function finish(report: StoreReport): StoreReport {
  report.ok = report.problems.length === 0;
  return report;
}
