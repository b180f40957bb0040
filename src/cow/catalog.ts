// The store catalog on the host: read, validate and replace atomically (temp, sync, rename,
// sync dir). It holds the volume's settings and its snapshot list; it never holds chunk data.

import { join } from "node:path";
import { CorruptStoreError } from "../errors.js";
import { type Catalog, decodeCatalog, encodeCatalog } from "./format.js";
import { type HostFs, readWholeFile, replaceFileAtomically } from "./host.js";

export const catalogPath = (dir: string) => join(dir, "catalog");
export const basePath = (dir: string) => join(dir, "base.img");

export async function readCatalog(host: HostFs, dir: string): Promise<Catalog> {
  const path = catalogPath(dir);
  if (!(await host.exists(path))) {
    throw new CorruptStoreError(
      dir,
      "is not a shadowfs store (no catalog); create one with `shadowfs init`",
    );
  }
  const cat = decodeCatalog(await readWholeFile(host, path));
  if (typeof cat === "string") throw new CorruptStoreError("catalog", cat);
  return cat;
}

export async function writeCatalog(host: HostFs, dir: string, cat: Catalog): Promise<void> {
  cat.generation++;
  await replaceFileAtomically(host, catalogPath(dir), encodeCatalog(cat));
}
