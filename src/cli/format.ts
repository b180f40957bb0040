// Sizes as people write them, and tables as people read them.

import { einval } from "../errors.js";

const UNITS: Record<string, number> = { "": 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** "8G", "64K", "512M", "1T" or a byte count (binary units; a trailing "B"/"iB" is allowed). */
export function parseSize(text: string, what: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  const n = m ? Number(m[1]) * UNITS[m[2]!.toUpperCase()]! : Number.NaN;
  if (!Number.isSafeInteger(Math.round(n)) || n < 0)
    throw einval(`${what} "${text}": expected a size such as 8G, 512M or 65536`);
  return Math.round(n);
}

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
