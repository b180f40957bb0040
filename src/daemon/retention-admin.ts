// What keeps history and what lets it go: properties (get/set), holds, and cleanup by the
// retention rules. It deletes only through the Service, and never a held or hand-made snapshot.

import { einval, isFsError } from "../errors.js";
import { gmtName } from "../mount/index.js";
import {
  checkPropertyNames,
  type PropertyValue,
  parseAssignments,
  propertyValues,
  type TimelineSettings,
  timelineSettings,
} from "./properties.js";
import type { SnapshotRow } from "./reports.js";
import { type Deletion, spaceDeletions, timelineDeletions } from "./retention.js";
import type { Service } from "./service.js";

/** The tag of a hold given without one. */
export const DEFAULT_HOLD_TAG = "hold";

export interface CleanupReport {
  dryRun: boolean;
  /** What was deleted (or, with dryRun, would be), oldest first, with the rule that chose it. */
  deleted: Array<SnapshotRow & { rule: string }>;
  /** Snapshots a rule chose that could not be deleted, and why. */
  skipped: Array<{ gmt: string; reason: string }>;
  usedBytes: number;
  limitBytes: number;
}

/** A hold's tag: a word people can type. */
function checkTag(tag: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,63}$/.test(tag))
    throw einval(`hold tag "${tag}": 1 to 64 letters, digits or ._:@+- (not starting with one)`);
}

export class Retention {
  private readonly changed: Array<() => void> = [];
  /** One cleanup at a time (the timeline's and a command's). */
  private cleaning: Promise<unknown> = Promise.resolve();

  constructor(private readonly service: Service) {}

  /** Calls `fn` after every `set`. */
  onChange(fn: () => void): void {
    this.changed.push(fn);
  }

  get(names: readonly string[] = []): PropertyValue[] {
    checkPropertyNames(names);
    const all = propertyValues(this.service.volume.settings, this.service.volume.properties());
    if (names.length === 0) return all;
    return names.map((n) => all.find((p) => p.property === n)!);
  }

  /** Applies `PROPERTY=VALUE` assignments, all checked first; returns the values now set. */
  async set(assignments: readonly string[]): Promise<PropertyValue[]> {
    const change = parseAssignments(assignments);
    const { volume } = this.service;
    if (change.limit !== undefined || change.onFull !== undefined)
      await volume.setShadowStorage({ limit: change.limit, onFull: change.onFull });
    if (Object.keys(change.props).length > 0) await volume.setProperties(change.props);
    for (const fn of this.changed) fn();
    const names = assignments.map((a) => a.slice(0, a.indexOf("=")));
    return this.get([...new Set(names)]);
  }

  timeline(): TimelineSettings {
    return timelineSettings(this.service.volume.properties());
  }

  async hold(ref: string, tag = DEFAULT_HOLD_TAG): Promise<SnapshotRow> {
    checkTag(tag);
    return this.service.row(await this.service.volume.hold(this.service.find(ref).id, tag));
  }

  async release(ref: string, tag = DEFAULT_HOLD_TAG): Promise<SnapshotRow> {
    checkTag(tag);
    return this.service.row(await this.service.volume.release(this.service.find(ref).id, tag));
  }

  /**
   * Applies the retention rules now: the timeline limits, then space-aware cleanup (timeline
   * snapshots, oldest first, until shadow storage used is at most `cleanup-free` of the limit).
   * With `dryRun` nothing is deleted, and the space figures are what each snapshot's exclusive
   * bytes say now.
   */
  cleanup(opts: { dryRun?: boolean } = {}): Promise<CleanupReport> {
    const run = this.cleaning.then(() => this.cleanupNow(opts.dryRun ?? false));
    this.cleaning = run.catch(() => undefined);
    return run;
  }

  private async cleanupNow(dryRun: boolean): Promise<CleanupReport> {
    const { service } = this;
    const { volume } = service;
    await service.listSettled();
    const settings = this.timeline();
    const { shadowStorageLimit: limit } = volume.settings;
    const report: CleanupReport = {
      dryRun,
      deleted: [],
      skipped: [],
      usedBytes: volume.storageUsed(),
      limitBytes: limit,
    };
    const gone = new Set<number>();
    const apply = async (d: Deletion): Promise<void> => {
      const info = volume.snapshots().find((s) => s.id === d.id)!;
      gone.add(d.id); // chosen once, whatever comes of it
      if (dryRun) {
        report.deleted.push({ ...service.row(info), rule: d.rule });
        report.usedBytes -= volume.exclusiveBytes(d.id);
        return;
      }
      try {
        report.deleted.push({ ...(await service.delete(String(d.id))), rule: d.rule });
      } catch (e) {
        if (!isFsError(e, "EBUSY")) throw e;
        report.skipped.push({
          gmt: gmtName(info.createdAt),
          reason: e.message.replace(/^EBUSY: /, ""),
        });
      }
      report.usedBytes = volume.storageUsed();
    };
    const left = () => volume.snapshots().filter((s) => !gone.has(s.id));
    for (const d of timelineDeletions(left(), settings.keep)) await apply(d);
    if (settings.cleanupFree !== null && limit > 0) {
      const target = Math.floor(settings.cleanupFree * limit);
      const rule = `cleanup-free=${Math.round(settings.cleanupFree * 100)}% of the shadow storage limit`;
      const next = () =>
        spaceDeletions(
          left(),
          report.usedBytes,
          target,
          (id) => volume.exclusiveBytes(id),
          rule,
        )[0];
      for (let d = next(); d; d = next()) await apply(d);
    }
    return report;
  }
}
