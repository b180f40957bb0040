// What a command prints: result lines, JSON, progress on a terminal, and errors as one line.
// It never decides what to print or how a command exits; the commands and main.ts do.

import { isFsError } from "../errors.js";
import type { OnProgress } from "./connect.js";

export const print = (text: string) => process.stdout.write(`${text}\n`);

export const json = (value: unknown) => print(JSON.stringify(value, null, 2));

/** A progress line on a terminal; nothing when stderr is not one. */
export function progress(what: string): OnProgress | undefined {
  if (!process.stderr.isTTY) return undefined;
  return (done, total) => {
    process.stderr.write(`\r${what}: ${done}/${total}${done === total ? "\n" : ""}`);
  };
}

/** An error we made (here or in the daemon) reads as its message, without the errno prefix. */
export const ours = (e: unknown): e is Error =>
  isFsError(e) || (e instanceof Error && e.name === "RpcError");

export const message = (e: unknown) =>
  ours(e) ? e.message.replace(/^E[A-Z0-9]+: /, "") : e instanceof Error ? e.message : String(e);
