// A fault-injecting HostFs in memory: tracks what is durable (synced) apart from what is merely
// written, and on a "power cut" keeps only the durable state (or a random part of the rest).

import { dirname } from "node:path";
import type { HostFile, HostFs } from "../../src/cow/host.js";

export class PowerCut extends Error {
  constructor() {
    super("power cut: the host stopped");
    this.name = "PowerCut";
  }
}

const ioError = () => Object.assign(new Error("EIO: injected I/O error"), { code: "EIO" });

type Pending = { kind: "write"; pos: number; data: Buffer } | { kind: "truncate"; length: number };

class Inode {
  /** What reads see. */
  live: Buffer = Buffer.alloc(0);
  /** What survives a power cut. */
  durable: Buffer = Buffer.alloc(0);
  /** Operations since the last sync, in order. */
  pending: Pending[] = [];
}

type NsOp = { dir: string; apply: (ns: Map<string, Inode>) => void };

export interface CrashOptions {
  /** Stop the host (every later call throws PowerCut) after this many mutating calls. */
  cutAfter?: number;
  /** Fail every call with EIO after this many mutating calls. */
  failAfter?: number;
}

/**
 * Mutating calls (write, truncate, sync, rename, unlink, create, syncDir) are counted, so a test
 * can cut the power or start failing at any one of them. `reboot` returns the host as it would
 * come back: synced data and synced directory entries; with `mode: "random"` also a random
 * subset of the unsynced writes, torn at 512-byte sectors, and a prefix of the directory changes.
 */
export class CrashHost implements HostFs {
  private files = new Map<string, Inode>();
  private durableNs = new Map<string, Inode>();
  private nsPending: NsOp[] = [];
  private dirs = new Set<string>(["/"]);
  ops = 0;
  private stopped = false;

  constructor(private opts: CrashOptions = {}) {}

  /** Sets when the host fails, counting from now. */
  arm(opts: CrashOptions): void {
    this.opts = {
      cutAfter: opts.cutAfter === undefined ? undefined : this.ops + opts.cutAfter,
      failAfter: opts.failAfter === undefined ? undefined : this.ops + opts.failAfter,
    };
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /** Counts a mutating call; throws when the host is cut or failing. */
  tick(): void {
    if (this.stopped) throw new PowerCut();
    this.ops++;
    if (this.opts.cutAfter !== undefined && this.ops > this.opts.cutAfter) {
      this.stopped = true;
      throw new PowerCut();
    }
    if (this.opts.failAfter !== undefined && this.ops > this.opts.failAfter) throw ioError();
  }

  alive(): void {
    if (this.stopped) throw new PowerCut();
  }

  /** The host after a power cut: open handles are dead; unsynced state is lost (or partly kept). */
  reboot(mode: "drop" | "random" = "drop", rand: () => number = Math.random): CrashHost {
    this.stopped = true;
    const next = new CrashHost();
    next.dirs = new Set(this.dirs);
    const ns = new Map(this.durableNs);
    if (mode === "random") {
      const keep = Math.floor(rand() * (this.nsPending.length + 1));
      for (const op of this.nsPending.slice(0, keep)) op.apply(ns);
    }
    const fresh = new Map<Inode, Inode>();
    for (const [path, ino] of ns) {
      let copy = fresh.get(ino);
      if (!copy) {
        copy = new Inode();
        let content: Buffer = Buffer.from(ino.durable);
        if (mode === "random")
          for (const p of ino.pending) if (rand() < 0.5) content = applyTorn(content, p, rand);
        copy.live = content;
        copy.durable = Buffer.from(content);
        fresh.set(ino, copy);
      }
      next.files.set(path, copy);
      next.durableNs.set(path, copy);
    }
    return next;
  }

  /** Flips a byte of a file (live and durable), for damage tests. */
  corrupt(path: string, at: number): void {
    const ino = this.files.get(path);
    if (!ino) throw new Error(`no file ${path}`);
    ino.live[at]! ^= 0xff;
    ino.durable = Buffer.from(ino.live);
  }

  fileSize(path: string): number {
    return this.files.get(path)?.live.length ?? -1;
  }

  async open(
    path: string,
    opts: { create?: boolean; exclusive?: boolean; readOnly?: boolean } = {},
  ): Promise<HostFile> {
    this.alive();
    let ino = this.files.get(path);
    if (ino && opts.exclusive)
      throw Object.assign(new Error(`EEXIST: ${path}`), { code: "EEXIST" });
    if (!ino) {
      if (!opts.create) throw Object.assign(new Error(`ENOENT: ${path}`), { code: "ENOENT" });
      if (!this.dirs.has(dirname(path)))
        throw Object.assign(new Error(`ENOENT: ${dirname(path)}`), { code: "ENOENT" });
      this.tick();
      const made = new Inode();
      ino = made;
      this.files.set(path, made);
      this.nsPending.push({ dir: dirname(path), apply: (ns) => ns.set(path, made) });
    }
    return new CrashFile(this, ino, opts.readOnly ?? false);
  }

  async exists(path: string): Promise<boolean> {
    this.alive();
    return this.files.has(path) || this.dirs.has(path);
  }

  async readdir(dir: string): Promise<string[]> {
    this.alive();
    return [...this.files.keys()]
      .filter((p) => dirname(p) === dir)
      .map((p) => p.slice(dir.length + 1));
  }

  async mkdir(dir: string): Promise<void> {
    this.alive();
    for (let d = dir; d !== "/" && d !== "."; d = dirname(d)) this.dirs.add(d);
  }

  async rename(from: string, to: string): Promise<void> {
    this.tick();
    const ino = this.files.get(from);
    if (!ino) throw Object.assign(new Error(`ENOENT: ${from}`), { code: "ENOENT" });
    this.files.delete(from);
    this.files.set(to, ino);
    this.nsPending.push({
      dir: dirname(to),
      apply: (ns) => {
        ns.delete(from);
        ns.set(to, ino);
      },
    });
  }

  async unlink(path: string): Promise<void> {
    this.tick();
    if (!this.files.delete(path))
      throw Object.assign(new Error(`ENOENT: ${path}`), { code: "ENOENT" });
    this.nsPending.push({ dir: dirname(path), apply: (ns) => ns.delete(path) });
  }

  /** Directory changes become durable in order: everything up to the last one in `dir`. */
  async syncDir(dir: string): Promise<void> {
    this.tick();
    let last = -1;
    this.nsPending.forEach((op, i) => {
      if (op.dir === dir) last = i;
    });
    for (const op of this.nsPending.slice(0, last + 1)) op.apply(this.durableNs);
    this.nsPending = this.nsPending.slice(last + 1);
  }
}

class CrashFile implements HostFile {
  constructor(
    private readonly host: CrashHost,
    private readonly ino: Inode,
    private readonly readOnly: boolean,
  ) {}

  async read(buf: Uint8Array, position: number): Promise<number> {
    this.host.alive();
    const src = this.ino.live;
    const n = Math.max(0, Math.min(buf.length, src.length - position));
    if (n > 0) buf.set(src.subarray(position, position + n));
    buf.fill(0, n);
    return n;
  }

  async write(data: Uint8Array, position: number): Promise<void> {
    this.writable();
    this.host.tick();
    const copy = Buffer.from(data);
    this.ino.live = applyOp(this.ino.live, { kind: "write", pos: position, data: copy });
    this.ino.pending.push({ kind: "write", pos: position, data: copy });
  }

  writev(chunks: readonly Uint8Array[], position: number): Promise<void> {
    return this.write(Buffer.concat(chunks), position);
  }

  async sync(): Promise<void> {
    this.host.tick();
    this.ino.durable = Buffer.from(this.ino.live);
    this.ino.pending = [];
  }

  async truncate(length: number): Promise<void> {
    this.writable();
    this.host.tick();
    this.ino.live = applyOp(this.ino.live, { kind: "truncate", length });
    this.ino.pending.push({ kind: "truncate", length });
  }

  async size(): Promise<number> {
    this.host.alive();
    return this.ino.live.length;
  }

  async close(): Promise<void> {}

  private writable(): void {
    if (this.readOnly)
      throw Object.assign(new Error("EBADF: file opened read-only"), { code: "EBADF" });
  }
}

function applyOp(content: Buffer, op: Pending): Buffer {
  if (op.kind === "truncate") {
    const out = Buffer.alloc(op.length);
    content.copy(out, 0, 0, Math.min(op.length, content.length));
    return out;
  }
  const end = op.pos + op.data.length;
  const out =
    end > content.length ? Buffer.concat([content, Buffer.alloc(end - content.length)]) : content;
  op.data.copy(out, op.pos);
  return out;
}

/** Applies a write keeping a random subset of its 512-byte sectors (a torn write). */
function applyTorn(content: Buffer, op: Pending, rand: () => number): Buffer {
  if (op.kind === "truncate" || rand() < 0.5) return applyOp(content, op);
  let out = content;
  for (let s = 0; s < op.data.length; s += 512) {
    if (rand() < 0.5)
      out = applyOp(out, { kind: "write", pos: op.pos + s, data: op.data.subarray(s, s + 512) });
  }
  return out;
}
