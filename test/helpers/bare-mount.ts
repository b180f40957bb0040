// A filesystem in memory served by FuseOps at argv[2] WITHOUT default_permissions (FuseMount
// always asks the kernel for its checks; this child mounts through fuse-native itself), with
// allow_other and a root of mode 1777, so that tests see the rules FuseOps enforces on its own.
// Says {type: "ready"} or {type: "failed"} over IPC; unmounts and exits when the test goes away.

import Fuse from "fuse-native";
import { Gate, MemoryBlockDevice } from "../../src/cow/index.js";
import { FileSystem } from "../../src/fs/filesystem.js";
import { FuseOps, requestCaller, View } from "../../src/mount/index.js";

const mnt = process.argv[2];
if (!mnt) throw new Error("usage: bare-mount MOUNTPOINT");
const send = (m: { type: string; message?: string }) => process.send?.(m);

const dev = new MemoryBlockDevice(256 << 20);
await FileSystem.mkfs(dev, { mode: 0o1777 });
const ops = new FuseOps({
  root: new View(await FileSystem.open(dev), "production"),
  gate: new Gate(),
  log: { error: (fields, msg) => console.error(msg, fields) },
  caller: requestCaller,
});

class BareFuse extends Fuse {
  protected override _fuseOptions(): string {
    return `${super._fuseOptions()},attr_timeout=0,entry_timeout=0`;
  }
}
const fuse = new BareFuse(mnt, ops.operations(), { useIno: true, allowOther: true });
fuse.mount((err) => send(err ? { type: "failed", message: err.message } : { type: "ready" }));
process.on("disconnect", () => fuse.unmount(() => process.exit(0)));
