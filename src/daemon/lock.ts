// The store's lock: an open file description lock (F_OFD_SETLK) on STORE/lock, which the kernel
// releases when its holder dies however it dies, so no pid is ever guessed. The file also holds
// the holder's pid, for messages only; it never decides who holds the lock.

import { constants as fsConstants } from "node:fs";
import { type FileHandle, open, stat, unlink } from "node:fs/promises";
import { constants } from "node:os";
import { type ErrnoCode, FsError } from "../errors.js";
import { storePaths } from "./paths.js";

/**
 * The native lock call, loaded on first use: loading the addon takes 13-20 ms of a command's
 * start, which commands that never lock (`--help`, most verbs) need not pay.
 */
async function tryLock(fd: number, opts?: { shared?: boolean }): Promise<boolean> {
  const native = await import("fs-native-extensions");
  return native.tryLock(fd, opts);
}

/**
 * Tries a lock already held for at most this long before saying the store is in use: a probe
 * (`lockHolder`) holds a shared lock for the instant it takes to look.
 */
const BUSY_RETRIES = 10;
const BUSY_WAIT_MS = 10;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The pid written in the lock file, or 0 while its holder has not written it yet. */
async function pidIn(fh: FileHandle): Promise<number> {
  for (let i = 0; i < BUSY_RETRIES; i++) {
    const { buffer, bytesRead } = await fh.read(Buffer.alloc(32), 0, 32, 0);
    const pid = Number.parseInt(buffer.subarray(0, bytesRead).toString(), 10);
    if (pid > 0) return pid;
    await sleep(BUSY_WAIT_MS);
  }
  return 0;
}

/** A lock the host filesystem refused (ENOLCK on one that keeps no locks, say). */
function lockFailed(e: unknown, lock: string): never {
  const code = (e as NodeJS.ErrnoException).code;
  throw new FsError(
    code !== undefined && code in constants.errno ? (code as ErrnoCode) : "ENOLCK",
    `cannot lock ${lock}: ${(e as Error).message}`,
  );
}

/**
 * Takes the store's lock for this process. Returns the function that releases it: it removes
 * the file while still holding the lock, so whoever locks next locks a file that is there.
 */
export async function lockStore(store: string): Promise<() => Promise<void>> {
  const { lock, dir } = storePaths(store);
  for (let busy = 0; ; ) {
    const fh = await open(lock, fsConstants.O_RDWR | fsConstants.O_CREAT, 0o644);
    let locked: boolean;
    try {
      locked = await tryLock(fh.fd);
    } catch (e) {
      await fh.close();
      lockFailed(e, lock);
    }
    if (!locked) {
      if (++busy < BUSY_RETRIES) {
        await fh.close();
        await sleep(BUSY_WAIT_MS);
        continue;
      }
      const pid = await pidIn(fh);
      await fh.close();
      throw new FsError("EBUSY", `${dir} is in use by process ${pid || "(unknown)"}`);
    }
    // The previous holder may have removed the file between our open and our lock: then this
    // lock guards nothing, and the file now at the path (if any) is the one to lock.
    const [mine, there] = await Promise.all([fh.stat(), stat(lock).catch(() => undefined)]);
    if (there === undefined || there.ino !== mine.ino || there.dev !== mine.dev) {
      await fh.close();
      continue;
    }
    await fh.truncate(0);
    await fh.write(`${process.pid}\n`, 0);
    return async () => {
      await unlink(lock).catch(() => undefined);
      await fh.close();
    };
  }
}

/**
 * The pid of the process holding the store's lock (0 if it cannot be read), or undefined when
 * nobody holds it. It looks by taking a shared lock for an instant, which `lockStore` waits out.
 */
export async function lockHolder(store: string): Promise<number | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(storePaths(store).lock, "r");
  } catch {
    return undefined;
  }
  try {
    let free: boolean;
    try {
      free = await tryLock(fh.fd, { shared: true });
    } catch (e) {
      lockFailed(e, storePaths(store).lock);
    }
    return free ? undefined : await pidIn(fh);
  } finally {
    await fh.close();
  }
}
