// Who asks for an operation: the calling process's user, group and supplementary groups, as the
// kernel gave them with the request. A plain value; the permission rules that read it live apart.

export interface Cred {
  readonly uid: number;
  readonly gid: number;
  /** Supplementary groups (the primary group may or may not be among them). */
  readonly groups: readonly number[];
}

/** The superuser: what the daemon itself, fsck and tools that open a store directly act as. */
export const SUPERUSER: Cred = Object.freeze({ uid: 0, gid: 0, groups: Object.freeze([]) });
