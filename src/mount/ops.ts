// The FUSE operations handed to fuse-native, gathered from their families (attributes, names,
// file data, xattrs); the families hold the operations. It holds no operation of its own.
//
// fuse-native's path-based calls are mapped onto the filesystem's inode API; the rules every
// operation follows (its caller, errno, the gate) are stated at the top of ops-core.ts.

import { attrOps } from "./ops-attr.js";
import { OpsCore, type OpsOptions } from "./ops-core.js";
import { fileOps } from "./ops-file.js";
import { namespaceOps } from "./ops-namespace.js";
import { xattrOps } from "./ops-xattr.js";
import type { View } from "./view.js";

export type { OpsOptions } from "./ops-core.js";

/**
 * Every operation shadowfs implements, by family. The binding tells the kernel it implements
 * exactly these (an absent one, such as flush, is answered ENOSYS by libfuse itself).
 */
const FAMILIES = [attrOps, namespaceOps, fileOps, xattrOps] as const;

export class FuseOps {
  private readonly core: OpsCore;

  constructor(o: OpsOptions) {
    this.core = new OpsCore(o);
  }

  /** Open files, per view: a revert refuses while production has any. */
  openCount(view: View): number {
    return this.core.openCount(view);
  }

  /**
   * The object handed to fuse-native: each operation bound once to the shared state, so that
   * a request costs one call into its operation, as a bound method did.
   */
  operations(): Record<string, unknown> {
    const ops: Record<string, unknown> = {};
    for (const family of FAMILIES)
      for (const [name, fn] of Object.entries(family)) {
        if (name in ops) throw new Error(`FUSE operation ${name} is defined twice`);
        ops[name] = (fn as (...args: never[]) => void).bind(this.core);
      }
    return ops;
  }
}
