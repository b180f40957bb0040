// The copy-on-write store's public surface; layers above import from here only.
// It re-exports; it defines nothing.

export { type BlockDevice, type HostRange, readBlock, writeBlock } from "./block-device.js";
export { checkStore, type StoreProblem, type StoreReport } from "./check.js";
export { FileBlockDevice, MemoryBlockDevice } from "./file-device.js";
export type { Eviction } from "./format.js";
export { Gate, Lease, Mutex } from "./gate.js";
export { type HostFile, type HostFs, NodeHostFs, replaceFileAtomically } from "./host.js";
export { SnapshotDevice } from "./snapshot-device.js";
export {
  badStream,
  decodeToken,
  encodeToken,
  type ResumeToken,
  type StreamCounts,
  type StreamHeader,
  type StreamSnapshot,
} from "./stream-format.js";
export {
  type ChunkSource,
  peekHeader,
  readFileAhead,
  type StreamChunks,
  StreamReader,
} from "./stream-read.js";
export {
  collectingSink,
  type StreamSink,
  snapshotStream,
  writeStream,
} from "./stream-write.js";
export { CowVolume } from "./volume.js";
export {
  type CreateOptions,
  DEFAULT_CHUNK_SIZE,
  type Logger,
  type OnFull,
  type OpenOptions,
  type Recovery,
  type SnapshotInfo,
} from "./volume-options.js";
