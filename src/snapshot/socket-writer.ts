// A long-lived writer that registered over the control socket, seen through an abstract channel.
// It never waits past a call's time-out, and never reports a dropped connection as an answer.

import { z } from "zod";
import { FsError } from "../errors.js";
import { method } from "./rpc/api.js";
import {
  type EventContext,
  timeoutReason,
  WRITER_EVENTS,
  WRITER_NAME,
  type Writer,
  type WriterAnswer,
  type WriterEvent,
  WriterFailure,
} from "./writer.js";

/**
 * A request/answer channel to one client. `request` resolves with the client's result and
 * rejects with its error; `onClose` runs once the channel is gone for good.
 */
export interface WriterChannel {
  request(method: string, params: object): Promise<unknown>;
  onClose(fn: () => void): void;
}

/** What a writer says about itself when it registers. */
export interface WriterRegistration {
  name: string;
  paths: string[];
  restore: string;
}

const registrationSchema = z.object({
  name: z.string().regex(WRITER_NAME, "letters, digits, '.', '_' or '-'"),
  paths: z.array(z.string().min(1)).default([]),
  restore: z.string().min(1).default("files"),
});

const eventSchema = z.object({
  event: z.enum(WRITER_EVENTS as [WriterEvent, ...WriterEvent[]]),
  context: z.object({
    volume: z.string(),
    mountpoint: z.string().nullable(),
    setId: z.string(),
    snapshotId: z.number().int().nullable(),
    snapshotName: z.string().nullable(),
  }),
});

/** What a long-lived writer asks the daemon: to be called at every event from now on. */
export const writerRegistrationApi = {
  "writer.register": method<{ registered: string }>()(registrationSchema),
};

/** What the daemon asks a registered writer, on the writer's own connection. */
export const writerEventApi = {
  "writer.event": method<Record<string, never>>()(eventSchema),
};

/** Validates the params of a `writer.register` request (`EINVAL` naming the bad field). */
export function parseRegistration(params: unknown): WriterRegistration {
  const r = registrationSchema.safeParse(params);
  if (!r.success) {
    const issue = r.error.issues[0];
    const where = issue?.path.join(".") || "params";
    throw new FsError("EINVAL", `writer registration: ${where}: ${issue?.message ?? "invalid"}`);
  }
  return r.data;
}

const DROPPED = "connection dropped";

export class SocketWriter implements Writer {
  readonly kind = "socket";
  readonly name: string;
  readonly paths: string[];
  readonly restore: string;
  private closed = false;
  private readonly pending = new Set<(reason: string) => void>();

  constructor(
    private readonly channel: WriterChannel,
    registration: WriterRegistration,
  ) {
    this.name = registration.name;
    this.paths = [...registration.paths];
    this.restore = registration.restore;
    channel.onClose(() => {
      this.closed = true;
      for (const fail of [...this.pending]) fail(DROPPED);
    });
  }

  /** False once the connection is gone; the writer then fails every call. */
  get connected(): boolean {
    return !this.closed;
  }

  call(event: WriterEvent, ctx: EventContext, timeoutMs: number): Promise<WriterAnswer> {
    if (this.closed) return Promise.reject(new WriterFailure(this.name, DROPPED));
    if (event === "identify")
      return Promise.resolve({ paths: [...this.paths], restore: this.restore });
    return new Promise((resolve, reject) => {
      const settle = (reason: string | null) => {
        if (!this.pending.delete(fail)) return;
        clearTimeout(timer);
        if (reason === null) resolve({});
        else reject(new WriterFailure(this.name, reason));
      };
      const fail = (reason: string) => settle(reason);
      this.pending.add(fail);
      const timer = setTimeout(() => settle(timeoutReason(event, timeoutMs)), timeoutMs);
      this.channel.request("writer.event", { event, context: ctx }).then(
        () => settle(null),
        (e: unknown) => settle(this.closed ? DROPPED : e instanceof Error ? e.message : String(e)),
      );
    });
  }
}
