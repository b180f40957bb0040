// A long-lived writer process for tests: registers on a daemon's control socket and logs every
// event it gets. Usage: node socket-writer.mjs STORE-OR-SOCKET NAME LOG [EVENT=hang|fail:REASON ...]
// It prints "registered" once the daemon has it.

import { appendFileSync } from "node:fs";
import { WriterClient } from "../../dist/src/snapshot/index.js";

const [socket, name, log, ...rules] = process.argv.slice(2);
const behaviour = new Map(
  rules.map((r) => [r.slice(0, r.indexOf("=")), r.slice(r.indexOf("=") + 1)]),
);

const handler = (event) => (ctx) => {
  appendFileSync(log, `${name} ${event} ${ctx.snapshotName ?? "-"}\n`);
  const how = behaviour.get(event);
  if (how === "hang") return new Promise(() => undefined);
  if (how?.startsWith("fail:")) throw new Error(how.slice(5));
};

const events = ["identify", "prepare", "freeze", "thaw", "post-snapshot"];
await WriterClient.register(socket, {
  name,
  paths: [`/data/${name}`],
  restore: "app",
  handlers: Object.fromEntries(events.map((e) => [e, handler(e)])),
});
process.stdout.write("registered\n");
