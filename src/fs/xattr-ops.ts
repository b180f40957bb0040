// Extended attributes of an inode: get, list, set and remove, all in one block per inode that is
// allocated on first use and freed when emptied. Never touches names or file contents.

import { eexist, FsError } from "../errors.js";
import { change, decoded, type FsContext, live, seen } from "./context.js";
import type { Cred } from "./cred.js";
import type { Inode } from "./inode.js";
import { listsXattr, mayXattr, R_OK, W_OK } from "./permission.js";
import { checkName, decodeXattrs, encodeXattrs, type Xattrs } from "./xattr.js";

const noData = (ino: number, name: string) =>
  new FsError("ENODATA", `inode ${ino} has no attribute ${name}`);

/**
 * The value of attribute `name`, or undefined if the inode has none: an answer, not an error,
 * as the kernel asks for security.capability before every write, and most files have none.
 */
export function findxattr(
  ctx: FsContext,
  ino: number,
  name: string,
  cred: Cred,
): Promise<Buffer | undefined> {
  const value = (inode: Readonly<Inode>, attrs: Xattrs) => {
    mayXattr(inode, name, cred, R_OK);
    const v = attrs.get(name);
    return v && Buffer.from(v);
  };
  const known = inMemory(ctx, ino);
  if (known) return new Promise((ok) => ok(value(known.inode, decode(known))));
  return ctx.meta.view(async () => {
    const inode = await seen(ctx, ino);
    return value(inode, await xattrs(ctx, inode));
  });
}

export async function getxattr(
  ctx: FsContext,
  ino: number,
  name: string,
  cred: Cred,
): Promise<Buffer> {
  const value = await findxattr(ctx, ino, name, cred);
  if (!value) throw noData(ino, name);
  return value;
}

export function listxattr(ctx: FsContext, ino: number, cred: Cred): Promise<string[]> {
  const names = (attrs: Xattrs) => [...attrs.keys()].filter((n) => listsXattr(n, cred));
  const known = inMemory(ctx, ino);
  if (known) return new Promise((ok) => ok(names(decode(known))));
  return ctx.meta.view(async () => names(await xattrs(ctx, await seen(ctx, ino))));
}

/** An inode and the image of its attribute block (undefined: it has none). */
interface WithXattrs {
  inode: Readonly<Inode>;
  image: Buffer | undefined;
}

/**
 * Inode `ino` and its attribute block, if the inode is decoded and the block (if any) is in
 * memory, read without the lock as `decoded` allows: the kernel asks for security.capability
 * before every write, and a copy of files with their attributes (`rsync -X`, `cp -a`) asks for
 * every file's list; neither then waits behind a commit. Else undefined.
 */
function inMemory(ctx: FsContext, ino: number): WithXattrs | undefined {
  const inode = decoded(ctx, ino);
  if (!inode || inode.mode === 0) return undefined;
  if (!inode.xattrBlock) return { inode, image: undefined };
  const image = ctx.meta.peek(inode.xattrBlock);
  return image && { inode, image };
}

const decode = ({ inode, image }: WithXattrs): Xattrs =>
  image ? decodeXattrs(image, inode.ino) : new Map();

/** Sets an attribute; `create` fails with EEXIST if it exists, `replace` with ENODATA if not. */
export function setxattr(
  ctx: FsContext,
  ino: number,
  name: string,
  value: Uint8Array,
  flags: { create?: boolean; replace?: boolean },
  cred: Cred,
): Promise<void> {
  return change(ctx, async () => {
    checkName(name);
    const inode = await live(ctx, ino);
    mayXattr(inode, name, cred, W_OK);
    const attrs = await xattrs(ctx, inode);
    if (flags.create && attrs.has(name)) throw eexist(`attribute ${name} exists`);
    if (flags.replace && !attrs.has(name)) throw noData(ino, name);
    attrs.set(name, Buffer.from(value));
    await save(ctx, inode, attrs);
  });
}

export function removexattr(ctx: FsContext, ino: number, name: string, cred: Cred): Promise<void> {
  return change(ctx, async () => {
    const inode = await live(ctx, ino);
    mayXattr(inode, name, cred, W_OK);
    const attrs = await xattrs(ctx, inode);
    if (!attrs.delete(name)) throw noData(ino, name);
    await save(ctx, inode, attrs);
  });
}

async function xattrs(ctx: FsContext, inode: Readonly<Inode>): Promise<Xattrs> {
  return decode({
    inode,
    image: inode.xattrBlock ? await ctx.meta.read(inode.xattrBlock) : undefined,
  });
}

/** Writes the attribute block (allocated on first use, freed when empty) and the inode. */
async function save(ctx: FsContext, inode: Inode, attrs: Xattrs): Promise<void> {
  const image = attrs.size > 0 ? encodeXattrs(attrs) : undefined;
  if (image && !inode.xattrBlock) {
    [inode.xattrBlock] = (await ctx.alloc.allocate(1, ctx.sb.dataStart)) as [number];
    inode.blocks++;
    ctx.meta.create(inode.xattrBlock).set(image);
  } else if (image) (await ctx.meta.write(inode.xattrBlock)).set(image);
  else if (inode.xattrBlock) {
    await ctx.alloc.release([inode.xattrBlock]);
    inode.xattrBlock = 0;
    inode.blocks--;
  }
  inode.ctime = ctx.now();
  await ctx.table.put(inode);
}
