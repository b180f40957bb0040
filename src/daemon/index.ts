// The daemon layer's public surface: stores, the daemon, its control socket and the service.

export { RpcError } from "../snapshot/rpc/message.js";
export { invoke } from "../snapshot/rpc/peer.js";
export {
  type ControlApi,
  type ControlClient,
  controlApi,
  type MethodName,
  type ParamsOf,
  type ResultOf,
} from "./api.js";
export { Daemon, type Started } from "./daemon.js";
export type { DiffChange } from "./diff.js";
export { controlMethods } from "./handlers.js";
export { lockHolder, lockStore } from "./lock.js";
export { isMountpoint, type ShadowfsMount, shadowfsMounts } from "./mounts.js";
export { isStore, storePaths } from "./paths.js";
export { VolumeProtocol, type WriterListing } from "./protocol.js";
export type {
  CheckReport,
  RevertResult,
  SnapshotRow,
  StatusReport,
  StorageReport,
  StoreStatus,
} from "./reports.js";
export type { RestoreResult } from "./restore.js";
export { connectSocket, serve } from "./rpc.js";
export { type Mount, Service } from "./service.js";
export { initStore, openStore } from "./store.js";
export type { PathVersion, VersionHolder, VersionsResult } from "./versions.js";
