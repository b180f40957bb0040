// The framing of the control socket: one JSON-RPC message a line (NDJSON), both ways.
// It parses nothing: each complete, non-empty line goes to the caller as it arrives.

import type { Socket } from "node:net";

/** Calls `onLine` with every complete non-empty line `socket` receives. */
export function onLines(socket: Socket, onLine: (line: string) => void): void {
  let buffered = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    buffered += chunk;
    for (let i = buffered.indexOf("\n"); i >= 0; i = buffered.indexOf("\n")) {
      const line = buffered.slice(0, i);
      buffered = buffered.slice(i + 1);
      if (line.trim() !== "") onLine(line);
    }
  });
}
