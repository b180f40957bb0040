// The daemon layer's public surface: stores, the daemon, its control socket and the service.

export { Daemon, type Started } from "./daemon.js";
export { lockHolder, lockStore, StoreLockedError } from "./lock.js";
export { isMountpoint, type ShadowfsMount, shadowfsMounts } from "./mounts.js";
export { isStore, storePaths } from "./paths.js";
export { VolumeProtocol, type WriterListing } from "./protocol.js";
export { type Method, type Peer, RpcClient, RpcError } from "./rpc.js";
export {
  type CheckReport,
  Service,
  type SnapshotRow,
  type StorageReport,
  type StoreStatus,
  serviceMethods,
} from "./service.js";
export { initStore, openStore } from "./store.js";
