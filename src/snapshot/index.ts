// The public face of the snapshot protocol: requester, participants, writers, history.
// Re-exports only; it never holds logic of its own.

export { WriterClient, type WriterClientOptions, type WriterHandler } from "./client.js";
export {
  ProtocolError,
  type SnapshotOptions,
  type SnapshotRun,
  takeSnapshot,
} from "./coordinator.js";
export {
  EXEC_WRITER_NAME,
  ExecWriter,
  killRunningWriters,
  parseIdentify,
  type ScanProblem,
  scanWriters,
} from "./exec-writer.js";
export {
  appendHistory,
  type History,
  type HistoryRecord,
  historyRecord,
  readHistory,
} from "./history.js";
export {
  type AbortReport,
  type LaterEvent,
  type Participant,
  type ParticipantOptions,
  type SnapshotMade,
  VolumeParticipant,
} from "./participant.js";
export type { Provider } from "./provider.js";
export { controlSocket, makeRuntimeDir } from "./runtime.js";
export {
  parseRegistration,
  SocketWriter,
  type WriterChannel,
  type WriterRegistration,
} from "./socket-writer.js";
export {
  type EventContext,
  isWriterEvent,
  WRITER_EVENTS,
  type Writer,
  type WriterAnswer,
  type WriterEvent,
  WriterFailure,
  type WriterInfo,
  type WriterResult,
} from "./writer.js";
