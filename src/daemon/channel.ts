// A byte channel beside a control call: the method listens on a socket of its own, in a new
// directory only this user may enter, tells the caller where (a `channel` notification) and takes
// the one connection that comes. It never reads or writes the bytes itself.

import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Socket } from "node:net";
import { join } from "node:path";
import { FsError } from "../errors.js";
import type { Caller } from "../snapshot/rpc/peer.js";
import { makeRuntimeDir } from "../snapshot/runtime.js";

/** How long the caller has to connect. */
const CONNECT_MS = 30_000;

/** Opens a channel to `caller`: resolves with the connected socket. */
export async function openChannel(caller: Caller): Promise<Socket> {
  const dir = await mkdtemp(join(await makeRuntimeDir(), "channel-"));
  const path = join(dir, "s");
  const server = createServer();
  try {
    await new Promise<void>((ok, fail) => {
      server.once("error", fail);
      server.listen(path, () => {
        server.off("error", fail);
        ok();
      });
    });
    let timer: NodeJS.Timeout | undefined;
    const connected = new Promise<Socket>((ok, fail) => {
      server.once("connection", ok);
      server.once("error", fail);
      timer = setTimeout(
        () => fail(new FsError("ETIMEDOUT", "the caller did not open the data channel")),
        CONNECT_MS,
      );
    });
    caller.notify("channel", { path });
    try {
      return await connected;
    } finally {
      clearTimeout(timer);
    }
  } finally {
    server.close();
    await rm(dir, { recursive: true, force: true });
  }
}
