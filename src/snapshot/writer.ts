// The writer seam: what an application taking part in a snapshot is told, and what it answers.
// Types and small shared helpers only; it never starts a process or opens a socket.

/** The steps of the snapshot protocol a writer hears about, in the order they happen. */
export type WriterEvent = "identify" | "prepare" | "freeze" | "thaw" | "post-snapshot";

export const WRITER_EVENTS: readonly WriterEvent[] = [
  "identify",
  "prepare",
  "freeze",
  "thaw",
  "post-snapshot",
];

export const isWriterEvent = (v: unknown): v is WriterEvent =>
  typeof v === "string" && (WRITER_EVENTS as readonly string[]).includes(v);

/** What a writer is told about the snapshot an event belongs to. */
export interface EventContext {
  /** The store (volume) being snapshotted. */
  volume: string;
  /** Where the volume is mounted, or null when it is not. */
  mountpoint: string | null;
  /** One id for every volume of a snapshot set. */
  setId: string;
  /** Null before the commit; afterwards the new snapshot's id on this volume. */
  snapshotId: number | null;
  /** Null before the commit; afterwards the new snapshot's `@GMT-…` name. */
  snapshotName: string | null;
}

/** What identify reports: the writer, the paths it owns, and how its data is restored. */
export interface WriterInfo {
  name: string;
  kind: "exec" | "socket";
  paths: string[];
  restore: string;
}

/** A successful answer: identify fills both fields, every other event answers `{}`. */
export interface WriterAnswer {
  paths?: string[];
  restore?: string;
}

/**
 * One application taking part in snapshots.
 * `call` resolves when the writer has done what the event asks, and rejects with a
 * `WriterFailure` when it refuses, fails, or does not answer within `timeoutMs` (in which
 * case whatever was started for the call has been stopped). It never rejects otherwise.
 */
export interface Writer {
  readonly name: string;
  readonly kind: "exec" | "socket";
  call(event: WriterEvent, ctx: EventContext, timeoutMs: number): Promise<WriterAnswer>;
}

/** A writer refused, failed or did not answer in time; `reason` is its own one-line words. */
export class WriterFailure extends Error {
  constructor(
    readonly writer: string,
    readonly reason: string,
  ) {
    super(`writer "${writer}": ${reason}`);
    this.name = "WriterFailure";
  }
}

/** How one writer answered one event, as the protocol records it. */
export interface WriterResult {
  volume: string;
  event: WriterEvent;
  writer: string;
  kind: "exec" | "socket";
  ok: boolean;
  /** Why it failed; absent when ok. */
  reason?: string;
  /** When the call started (ms since the epoch). */
  at: number;
  /** How long it took to answer, in ms. */
  ms: number;
}

export const timeoutReason = (event: WriterEvent, ms: number) =>
  `did not answer ${event} within ${Math.round(ms)} ms`;

/** The reason a failure gives, whatever was thrown. */
export const reasonOf = (e: unknown): string =>
  e instanceof WriterFailure ? e.reason : e instanceof Error ? e.message : String(e);

/** Writer names: letters, digits, dot, underscore and dash; nothing a shell or path bends. */
export const WRITER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** The order writers are called in for identify, prepare and freeze (reversed afterwards). */
export const byName = (a: { name: string; kind: string }, b: { name: string; kind: string }) =>
  a.name < b.name ? -1 : a.name > b.name ? 1 : a.kind < b.kind ? -1 : a.kind > b.kind ? 1 : 0;
