// The framing of the control socket: one JSON-RPC message a line (NDJSON), both ways.
// It parses nothing and never holds more than one line's limit of a line not yet complete.

import type { Socket } from "node:net";

export interface LineSink {
  /** A complete, non-empty line of valid UTF-8 (without its newline). */
  line(text: string): void;
  /** A complete line that is not valid UTF-8: skipped, reading goes on. */
  invalid(): void;
  /** A line longer than the limit: reading stops for good (the caller answers, then closes). */
  tooLong(): void;
}

const NEWLINE = 0x0a;

/**
 * Calls `sink` for every line `socket` receives. A line past `maxBytes` (newline excluded)
 * stops the reading: nothing of it is kept, so a peer cannot make this side hold more.
 */
export function onLines(socket: Socket, sink: LineSink, maxBytes: number): void {
  let parts: Buffer[] = [];
  let size = 0;
  let stopped = false;
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const finish = (tail: Buffer) => {
    const bytes = parts.length === 0 ? tail : Buffer.concat([...parts, tail]);
    parts = [];
    size = 0;
    let text: string;
    try {
      text = decoder.decode(bytes);
    } catch {
      sink.invalid();
      return;
    }
    if (text.trim() !== "") sink.line(text);
  };
  const onData = (chunk: Buffer | string) => {
    const data = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    let start = 0;
    while (!stopped) {
      const i = data.indexOf(NEWLINE, start);
      const end = i < 0 ? data.length : i;
      if (size + end - start > maxBytes) {
        stopped = true;
        parts = [];
        socket.off("data", onData);
        sink.tooLong();
        return;
      }
      if (i < 0) {
        if (end > start) {
          parts.push(data.subarray(start, end));
          size += end - start;
        }
        return;
      }
      finish(data.subarray(start, end));
      start = i + 1;
    }
  };
  socket.on("data", onData);
}
