// What a command prints and how: sizes as people write them, tables, lines, JSON, progress on a
// terminal, and errors as one line. It never decides what a command prints or how it exits.

import { isFsError } from "../errors.js";
import type { OnProgress } from "./connect.js";

export const print = (text: string) => process.stdout.write(`${text}\n`);

export const json = (value: unknown) => print(JSON.stringify(value, null, 2));

/** A progress line on a terminal, figures shown by `show`; nothing when stderr is not one. */
export function progress(
  what: string,
  show: (n: number) => string = String,
): OnProgress | undefined {
  if (!process.stderr.isTTY) return undefined;
  return (done, total) => {
    process.stderr.write(
      `\r${what}: ${show(done)} of ${show(total)}\x1b[K${done === total ? "\n" : ""}`,
    );
  };
}

/** An error we made (here or in the daemon) reads as its message, without the errno prefix. */
export const ours = (e: unknown): e is Error =>
  isFsError(e) || (e instanceof Error && e.name === "RpcError");

export const message = (e: unknown) =>
  ours(e) ? e.message.replace(/^E[A-Z0-9]+: /, "") : e instanceof Error ? e.message : String(e);

export { parseSize } from "../daemon/properties.js";

export function formatBytes(n: number): string {
  for (const [u, f] of [
    ["T", 2 ** 40],
    ["G", 2 ** 30],
    ["M", 2 ** 20],
    ["K", 2 ** 10],
  ] as const)
    if (n >= f) return `${(n / f).toFixed(n % f === 0 ? 0 : 1)}${u}`;
  return `${n}B`;
}

/** Rows under a header, columns padded to their widest cell. */
export function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const width = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  return all
    .map((r) =>
      r
        .map((c, i) => c.padEnd(width[i]!))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}
