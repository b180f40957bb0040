// Writers that are executables in a directory (`STORE/writers.d/NN-name`), run once per event.
// It never leaves a writer's process (or anything it forked) running past the call's time-out.
//
// The contract a writer executable sees:
//   argv[1]   the event: identify | prepare | freeze | thaw | post-snapshot
//   env       SHADOWFS_EVENT, SHADOWFS_VOLUME, SHADOWFS_MOUNTPOINT (empty when not mounted),
//             SHADOWFS_SET_ID, SHADOWFS_SNAPSHOT_ID and SHADOWFS_SNAPSHOT_NAME (empty before the
//             commit), plus the daemon's own environment; the working directory is writers.d.
//   exit 0    done; any other status is a refusal/failure whose reason is the last non-empty
//             line the writer wrote to stderr.
//   identify  may print lines `path=/some/path` (repeatable: the paths it owns) and
//             `restore=METHOD` (how its data is restored; default "files") on stdout.
//   time-out  its whole process group is killed with SIGKILL.

import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { access, lstat, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import {
  type EventContext,
  timeoutReason,
  type Writer,
  type WriterAnswer,
  type WriterEvent,
  WriterFailure,
} from "./writer.js";

/** `NN-name`: two digits fix the order, the rest names the writer. */
export const EXEC_WRITER_NAME = /^[0-9]{2}-[A-Za-z0-9._-]+$/;

/** The most of a writer's stdout / stderr kept (the head of stdout, the tail of stderr). */
const OUTPUT_LIMIT = 64 * 1024;
/** After the writer exits, how long its pipes may stay open (held by something it forked). */
const PIPE_GRACE_MS = 200;

/** The process groups of writer calls not yet answered. */
const running = new Set<number>();

/**
 * Kills every writer call still running in this process (a daemon that stops does not wait
 * for their time-outs); each such call fails. Returns how many were killed.
 */
export function killRunningWriters(): number {
  const pids = [...running];
  for (const pid of pids) killGroup(pid);
  return pids.length;
}

export class ExecWriter implements Writer {
  readonly kind = "exec";

  constructor(
    readonly name: string,
    /** The executable's path. */
    readonly path: string,
    /** The writers directory, the executable's working directory. */
    readonly dir: string,
  ) {}

  call(event: WriterEvent, ctx: EventContext, timeoutMs: number): Promise<WriterAnswer> {
    return new Promise((resolve, reject) => {
      let settled = false;
      let stdout = "";
      let stderr = "";
      const child = spawn(this.path, [event], {
        cwd: this.dir,
        detached: true,
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, ...environment(event, ctx) },
      });
      const pid = child.pid;
      if (pid !== undefined) running.add(pid);
      const finish = (fail: string | null) => {
        if (settled) return;
        settled = true;
        if (pid !== undefined) running.delete(pid);
        clearTimeout(timer);
        clearTimeout(grace);
        child.stdout?.destroy();
        child.stderr?.destroy();
        if (fail !== null) reject(new WriterFailure(this.name, fail));
        else resolve(event === "identify" ? parseIdentify(stdout) : {});
      };
      const timer = setTimeout(() => {
        killGroup(pid);
        finish(timeoutReason(event, timeoutMs));
      }, timeoutMs);
      let grace: NodeJS.Timeout | undefined;
      let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
      const judge = () => {
        if (!exit) return;
        if (exit.code === 0) return finish(null);
        const said = lastLine(stderr);
        if (said !== null) return finish(said);
        finish(
          exit.signal ? `killed by ${exit.signal}` : `exited with status ${exit.code ?? "unknown"}`,
        );
      };
      child.stdout?.setEncoding("utf8");
      child.stderr?.setEncoding("utf8");
      child.stdout?.on("data", (s: string) => {
        if (stdout.length < OUTPUT_LIMIT) stdout += s;
      });
      child.stderr?.on("data", (s: string) => {
        stderr = (stderr + s).slice(-OUTPUT_LIMIT);
      });
      child.on("error", (e) => finish(`could not run: ${e.message}`));
      child.on("exit", (code, signal) => {
        exit = { code, signal };
        grace = setTimeout(judge, PIPE_GRACE_MS);
      });
      child.on("close", judge);
    });
  }
}

function environment(event: WriterEvent, ctx: EventContext): Record<string, string> {
  return {
    SHADOWFS_EVENT: event,
    SHADOWFS_VOLUME: ctx.volume,
    SHADOWFS_MOUNTPOINT: ctx.mountpoint ?? "",
    SHADOWFS_SET_ID: ctx.setId,
    SHADOWFS_SNAPSHOT_ID: ctx.snapshotId === null ? "" : String(ctx.snapshotId),
    SHADOWFS_SNAPSHOT_NAME: ctx.snapshotName ?? "",
  };
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

function lastLine(text: string): string | null {
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  const last = lines[lines.length - 1];
  return last === undefined ? null : last.trim();
}

/** identify's stdout: `path=…` lines and a `restore=…` line; anything else is ignored. */
export function parseIdentify(stdout: string): { paths: string[]; restore: string } {
  const paths: string[] = [];
  let restore = "files";
  for (const line of stdout.split("\n")) {
    const eq = line.indexOf("=");
    if (eq < 0) continue;
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    if (key === "path" && value !== "") paths.push(value);
    else if (key === "restore" && value !== "") restore = value;
  }
  return { paths, restore };
}

export interface ScanProblem {
  /** The directory entry's name. */
  entry: string;
  problem: string;
}

/**
 * The writers in `dir`, sorted by name, and every entry that is not a usable writer with what
 * is wrong with it: nothing is skipped silently. A missing directory holds no writers.
 */
export async function scanWriters(
  dir: string,
): Promise<{ writers: ExecWriter[]; problems: ScanProblem[] }> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { writers: [], problems: [] };
    throw e;
  }
  const writers: ExecWriter[] = [];
  const problems: ScanProblem[] = [];
  for (const entry of entries.sort()) {
    const problem = await check(dir, entry);
    if (problem !== null) problems.push({ entry, problem });
    else writers.push(new ExecWriter(entry, join(dir, entry), dir));
  }
  return { writers, problems };
}

async function check(dir: string, entry: string): Promise<string | null> {
  const path = join(dir, entry);
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(path);
  } catch (e) {
    const link = await lstat(path).catch(() => null);
    if (link?.isSymbolicLink()) return "a symbolic link to nothing";
    return `cannot be read: ${(e as Error).message}`;
  }
  if (st.isDirectory()) return "a directory, not an executable file";
  if (!st.isFile()) return "not a regular file";
  if (!EXEC_WRITER_NAME.test(entry))
    return "name must be NN-name (two digits, a dash, then letters, digits, '.', '_' or '-')";
  try {
    await access(path, constants.X_OK);
  } catch {
    return "not executable (chmod +x it)";
  }
  if ((st.mode & 0o111) === 0) return "not executable (chmod +x it)";
  return null;
}
