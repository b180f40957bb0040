// The reference `snapshot diff` for tests: walks both trees whole (names, inode numbers and
// generations, attributes, contents, xattrs) and says what changed. It asserts nothing.

import { createHash } from "node:crypto";
import type { Attr } from "../../src/fs/attr.js";
import type { Change, ChangeKind } from "../../src/fs/diff.js";
import { fileKind } from "../../src/fs/diff.js";
import { type FileSystem, ROOT } from "../../src/fs/filesystem.js";

interface Name {
  /** The directory's number and life (generation and birth time), and the name's bytes. */
  id: string;
  path: string;
}

export interface Node {
  ino: number;
  /** Which life of the number: generation and birth time. */
  life: string;
  mode: number;
  size: number;
  /** Everything but atime, the contents and the xattrs, as one string. */
  state: string;
  names: Name[];
}

/** Every inode reachable from the root of `fs`, with all its names. */
export async function walkTree(fs: FileSystem): Promise<Map<number, Node>> {
  const out = new Map<number, Node>();
  const queue: Array<{ ino: number; life: string; path: string }> = [
    { ino: ROOT, life: lifeOfAttr(await fs.getattr(ROOT)), path: "" },
  ];
  for (let next = 0; next < queue.length; next++) {
    const dir = queue[next]!;
    for (let cookie = 0n; ; ) {
      const page = await fs.readdir(dir.ino, cookie, 100);
      if (page.length === 0) break;
      cookie = page.at(-1)!.cookie;
      for (const e of page) {
        const name = e.name.toString();
        if (name === "." || name === "..") continue;
        const path = `${dir.path}/${name}`;
        const id = `${dir.ino}.${dir.life}/${e.name.toString("hex")}`;
        const known = out.get(e.ino);
        if (known) {
          known.names.push({ id, path });
          continue;
        }
        const node = await describe(fs, e.ino);
        node.names.push({ id, path });
        out.set(e.ino, node);
        if (fileKind(node.mode) === "directory") queue.push({ ino: e.ino, life: node.life, path });
      }
    }
  }
  return out;
}

const lifeOfAttr = (a: Pick<Attr, "generation" | "birthtime">) =>
  `${a.generation}.${a.birthtime.sec}.${a.birthtime.nsec}`;

async function describe(fs: FileSystem, ino: number): Promise<Node> {
  const { atime: _, ...attr } = await fs.getattr(ino);
  const kind = fileKind(attr.mode);
  const hash = createHash("sha256");
  if (kind === "file") hash.update(await fs.read(ino, 0, attr.size));
  if (kind === "symlink") hash.update(await fs.readlink(ino));
  for (const x of (await fs.listxattr(ino)).sort())
    hash.update(`${x}=${(await fs.getxattr(ino, x)).toString("hex")};`);
  const state = JSON.stringify({ ...attr, contents: hash.digest("hex") });
  return { ino, life: lifeOfAttr(attr), mode: attr.mode, size: attr.size, state, names: [] };
}

/** What changed from tree `a` to tree `b`, by the rules `snapshot diff` documents. */
export function referenceDiff(a: Map<number, Node>, b: Map<number, Node>): Change[] {
  const out: Change[] = [];
  for (const ino of new Set([...a.keys(), ...b.keys()])) {
    const was = a.get(ino);
    const is = b.get(ino);
    const line = (change: ChangeKind, node: Node, path: string, from?: string): Change => {
      const c: Change = { change, path, type: fileKind(node.mode), inode: ino };
      if (from !== undefined) c.from = from;
      if (change !== "added") c.sizeBefore = was!.size;
      if (change !== "removed") c.sizeAfter = is!.size;
      return c;
    };
    if (!was || !is || was.life !== is.life || fileKind(was.mode) !== fileKind(is.mode)) {
      for (const n of was?.names ?? []) out.push(line("removed", was!, n.path));
      for (const n of is?.names ?? []) out.push(line("added", is!, n.path));
      continue;
    }
    const before = new Set(was.names.map((n) => n.id));
    const after = new Set(is.names.map((n) => n.id));
    const byPath = (x: Name, y: Name) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0);
    const lost = was.names.filter((n) => !after.has(n.id)).sort(byPath);
    const gained = is.names.filter((n) => !before.has(n.id)).sort(byPath);
    const pairs = Math.min(lost.length, gained.length);
    for (let i = 0; i < pairs; i++) out.push(line("renamed", is, gained[i]!.path, lost[i]!.path));
    for (const n of lost.slice(pairs)) out.push(line("removed", is, n.path));
    for (const n of gained.slice(pairs)) out.push(line("added", is, n.path));
    if (was.state !== is.state)
      for (const n of is.names) if (before.has(n.id)) out.push(line("modified", is, n.path));
  }
  return canonical(out);
}

/** Changes in one order, whatever order they came in (to compare two lists). */
export function canonical(changes: Change[]): Change[] {
  const key = (c: Change) => `${c.path}\u0000${c.change}\u0000${c.from ?? ""}\u0000${c.inode}`;
  return [...changes].sort((x, y) => (key(x) < key(y) ? -1 : key(x) > key(y) ? 1 : 0));
}
