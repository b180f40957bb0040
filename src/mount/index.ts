// The FUSE layer's public surface; layers above import from here only.

export { FuseMount, parseMountOptions } from "./fuse.js";
export { gmtName, isGmtName } from "./names.js";
export { FuseOps, SNAPDIR } from "./ops.js";
export { SnapshotViews } from "./snapshots.js";
export { View } from "./view.js";
