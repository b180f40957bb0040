// Snapshot directory names: `@GMT-YYYY.MM.DD-HH.MM.SS`, the UTC creation time, as Samba's
// vfs_shadow_copy2 shows snapshots to Windows "Previous Versions".

const pad = (n: number) => String(n).padStart(2, "0");

/** The `@GMT-…` name of a snapshot created at `createdAt` (milliseconds since the epoch). */
export function gmtName(createdAt: number): string {
  const d = new Date(createdAt);
  return (
    `@GMT-${d.getUTCFullYear()}.${pad(d.getUTCMonth() + 1)}.${pad(d.getUTCDate())}-` +
    `${pad(d.getUTCHours())}.${pad(d.getUTCMinutes())}.${pad(d.getUTCSeconds())}`
  );
}

export const isGmtName = (name: string) => /^@GMT-\d{4}\.\d\d\.\d\d-\d\d\.\d\d\.\d\d$/.test(name);
