#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS node
// The `shadowfs` command: builds the commander program from the verb groups in commands/, and
// turns errors into one line and an exit status. It holds no verb; a TARGET is a store or mount.
// Its first line starts Node without NODE_EXTRA_CA_CERTS, which only slows the start (node-env.ts).

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Command, CommanderError } from "commander";
import { healthCommands } from "./commands/health.js";
import { historyCommands } from "./commands/history.js";
import { remoteCommands } from "./commands/remote.js";
import { retentionCommands } from "./commands/retention.js";
import { snapshotCommands } from "./commands/snapshot.js";
import { storeCommands } from "./commands/store.js";
import { transportCommands } from "./commands/transport.js";
import { writerCommands } from "./commands/writers.js";
import { message, ours } from "./format.js";

// Output to a pipe whose reader is gone (`shadowfs status | head -1`) ends the command quietly
// with status 0, as it ends `ls | head`.
for (const stream of [process.stdout, process.stderr])
  stream.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code !== "EPIPE") throw e;
    process.exit(0);
  });

/** The version in shadowfs's package.json, found upward from this file (src/cli/ or dist/bin/). */
function version(): string {
  for (
    let dir = dirname(fileURLToPath(import.meta.url));
    dir !== dirname(dir);
    dir = dirname(dir)
  ) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === "shadowfs") return pkg.version ?? "unknown";
    } catch {
      // Not here: one directory up.
    }
  }
  return "unknown";
}

export function program(): Command {
  const cli = new Command("shadowfs")
    .description("a versioning filesystem with point-in-time snapshots, mounted with FUSE")
    // Usage errors are thrown (and said in one line, as every other error), not printed here.
    .version(version(), "-V, --version", "print the version")
    .exitOverride()
    .configureOutput({ outputError: () => undefined });
  // In the order `shadowfs --help` lists them.
  storeCommands(cli); // init, mount, unmount, status
  const snapshot = snapshotCommands(cli);
  retentionCommands(cli, snapshot); // get, set; snapshot hold, release, cleanup
  transportCommands(cli, snapshot); // snapshot send, receive, clone; replicate
  remoteCommands(cli); // remote list, verify, prune
  historyCommands(cli); // versions, restore
  writerCommands(cli);
  healthCommands(cli); // storage, fsck
  return cli;
}

program()
  .parseAsync(process.argv)
  .catch((e: unknown) => {
    if (e instanceof CommanderError) {
      // --help, --version and a bare `shadowfs` end here too, having printed the help.
      if (e.exitCode === 0 || e.code === "commander.help") process.exit(e.exitCode);
      process.stderr.write(
        `shadowfs: ${e.message.replace(/^error: /, "")} (see shadowfs --help)\n`,
      );
      process.exit(e.exitCode || 1);
    }
    process.stderr.write(`shadowfs: ${message(e)}\n`);
    if (!ours(e)) process.stderr.write(`${(e as Error).stack ?? ""}\n`);
    process.exit(1);
  });
