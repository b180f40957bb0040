// The FUSE layer's public surface; layers above import from here only.

export { FuseMount, READ_AHEAD_KB, REQUEST_THREAD_BOOST, requestCaller } from "./fuse.js";
export { type MountEntry, mountTable } from "./mount-table.js";
export { gmtName, isGmtName } from "./names.js";
export { FuseOps } from "./ops.js";
export { SNAPDIR, SNAPDIR_INO } from "./ops-core.js";
export { parseMountOptions } from "./options.js";
export { SnapshotViews } from "./snapshots.js";
export { View } from "./view.js";
