// The `remote` verbs, over snapshots in object storage: `remote list`, `remote verify` and
// `remote prune`. Each parses, calls one function of daemon/remote and prints; none loads the S3
// client before it runs.

import type { Command } from "commander";
import { parseRemoteUrl } from "../../daemon/remote/url.js";
import { FsError } from "../../errors.js";
import { formatBytes, json, print, table } from "../format.js";
import type { openRemote } from "../remote.js";

const admin = () => import("../../daemon/remote/admin.js");

interface RemoteOptions {
  endpoint?: string;
  json?: boolean;
}

/** Runs `fn` on the remote `address` names (without a snapshot), closing its client after. */
async function withRemote<T>(
  address: string,
  o: RemoteOptions,
  fn: (remote: Awaited<ReturnType<typeof openRemote>>) => Promise<T>,
): Promise<T> {
  const url = parseRemoteUrl(address);
  if (url.snapshot !== undefined)
    throw new FsError("EINVAL", `${address}: name a place (s3://BUCKET/PREFIX), not a snapshot`);
  const remote = await (await import("../remote.js")).openRemote(url, o.endpoint);
  try {
    return await fn(remote);
  } finally {
    remote.s3.close();
  }
}

const endpointOption = (c: Command) =>
  c.option(
    "--endpoint <url>",
    "the S3 endpoint (else AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, else AWS's own)",
  );

export function remoteCommands(cli: Command): void {
  const remote = cli
    .command("remote")
    .description("snapshots in object storage (s3://BUCKET/PREFIX): list, verify, prune");

  endpointOption(remote.command("list"))
    .description("the snapshots there, oldest first, with their sizes")
    .argument("<url>", "s3://BUCKET/PREFIX")
    .option("--json", "print JSON")
    .action(async (address: string, o: RemoteOptions) => {
      const { listRemote } = await admin();
      const rows = await withRemote(address, o, listRemote);
      if (o.json) {
        json(rows);
        return;
      }
      if (rows.length === 0) {
        print(`no snapshots in ${address}`);
        return;
      }
      print(
        table(
          ["SNAPSHOT", "NAME", "CREATED", "SIZE", "EXCLUSIVE"],
          rows.map((r) => [
            r.gmt,
            r.name ?? "-",
            r.createdAt,
            formatBytes(r.bytes),
            formatBytes(r.exclusiveBytes),
          ]),
        ),
      );
    });

  endpointOption(remote.command("verify"))
    .description("check every manifest and the objects they need against their checksums")
    .argument("<url>", "s3://BUCKET/PREFIX")
    .option("--json", "print JSON")
    .action(async (address: string, o: RemoteOptions) => {
      const { verifyRemote } = await admin();
      const report = await withRemote(address, o, verifyRemote);
      if (o.json) json(report);
      else {
        for (const p of report.problems) print(`${p.object}: ${p.problem}`);
        print(
          `${report.where}: ${report.snapshots} snapshots, ${report.packs} packs, ` +
            `${formatBytes(report.bytesChecked)} checked: ` +
            (report.problems.length ? `${report.problems.length} problems` : "no problem"),
        );
      }
      if (report.problems.length > 0) process.exitCode = 1;
    });

  endpointOption(remote.command("prune"))
    .description(
      "delete all but the newest snapshots there, then every pack no kept snapshot needs " +
        "(while nothing replicates to the same place)",
    )
    .argument("<url>", "s3://BUCKET/PREFIX")
    .requiredOption("--keep <n>", "how many of the newest snapshots to keep (1 or more)")
    .option("--dry-run", "say what would go, delete nothing")
    .option("--json", "print JSON")
    .action(async (address: string, o: RemoteOptions & { keep: string; dryRun?: boolean }) => {
      if (!/^\d+$/.test(o.keep))
        throw new FsError("EINVAL", `--keep ${o.keep}: a number of snapshots (1 or more)`);
      const { pruneRemote } = await admin();
      const report = await withRemote(address, o, (r) =>
        pruneRemote(r, Number(o.keep), o.dryRun ?? false),
      );
      if (o.json) {
        json(report);
        return;
      }
      const verb = report.dryRun ? "would prune" : "pruned";
      for (const gmt of report.pruned) print(`${verb} ${gmt}`);
      print(
        `${report.where}: ${verb} ${report.pruned.length} snapshots, kept ${report.kept.length}; ` +
          `${report.packsDeleted} packs (${formatBytes(report.bytesFreed)}) ${report.dryRun ? "would be " : ""}deleted`,
      );
    });
}
