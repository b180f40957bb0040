// A volume's properties, as `zfs get/set` shows them: each one's name, default, parser and text,
// and the typed settings the daemon acts on. It stores nothing: the store's catalog does.

import { einval } from "../errors.js";

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  K: 2 ** 10,
  M: 2 ** 20,
  G: 2 ** 30,
  T: 2 ** 40,
};

/** "8G", "64K", "512M", "1T" or a byte count (binary units; a trailing "B"/"iB" is allowed). */
export function parseSize(text: string, what: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  const n = m ? Number(m[1]) * SIZE_UNITS[m[2]!.toUpperCase()]! : Number.NaN;
  if (!Number.isSafeInteger(Math.round(n)) || n < 0)
    throw einval(`${what} "${text}": expected a size such as 8G, 512M or 65536`);
  return Math.round(n);
}

/** A size as exactly as a unit says it: "8G", "1536M", "4097". */
function sizeText(n: number): string {
  for (const u of ["T", "G", "M", "K"] as const)
    if (n >= SIZE_UNITS[u]! && n % SIZE_UNITS[u]! === 0) return `${n / SIZE_UNITS[u]!}${u}`;
  return String(n);
}

const DURATION_UNITS: Record<string, number> = { s: 1e3, m: 6e4, h: 36e5, d: 864e5, w: 6048e5 };

/** "90s", "15m", "1h", "1d", "1w": at least one second. */
function parseDuration(text: string, what: string): number {
  const m = /^([0-9]+)([smhdw])$/.exec(text.trim());
  const ms = m ? Number(m[1]) * DURATION_UNITS[m[2]!]! : Number.NaN;
  if (!Number.isSafeInteger(ms) || ms < 1000)
    throw einval(`${what} "${text}": expected a duration such as 1h, 15m, 1d or 30s`);
  return ms;
}

function durationText(ms: number): string {
  for (const u of ["w", "d", "h", "m"] as const)
    if (ms % DURATION_UNITS[u]! === 0) return `${ms / DURATION_UNITS[u]!}${u}`;
  return `${ms / 1000}s`;
}

function parseCount(text: string, what: string): number {
  if (!/^[0-9]{1,9}$/.test(text.trim()))
    throw einval(`${what} "${text}": expected a whole number, 0 or more`);
  return Number(text);
}

function parseSwitch(text: string, what: string): boolean {
  if (text === "on" || text === "off") return text === "on";
  throw einval(`${what} "${text}": expected on or off`);
}

/** "80%": a share of the shadow storage limit; "off": none. */
function parseShare(text: string, what: string): number | null {
  if (text === "off") return null;
  const m = /^([0-9]{1,3})%$/.exec(text.trim());
  const n = m ? Number(m[1]) : Number.NaN;
  if (!(n >= 1 && n <= 100))
    throw einval(`${what} "${text}": expected a share such as 80%, or off`);
  return n / 100;
}

/** What the retention rules keep: the newest N hours, days, weeks, months and years. */
export interface KeepLimits {
  hourly: number;
  daily: number;
  weekly: number;
  monthly: number;
  yearly: number;
}

/** The timeline and its retention, as the daemon acts on them. */
export interface TimelineSettings {
  enabled: boolean;
  intervalMs: number;
  keep: KeepLimits;
  /** False: a timeline snapshot is skipped when nothing changed since the newest snapshot. */
  keepEmpty: boolean;
  /** Cleanup also deletes timeline snapshots until shadow storage used is at most this share of the limit. */
  cleanupFree: number | null;
}

interface Stored {
  /** The default, as its text. */
  initial: string;
  /** Checks a value and returns it as stored (its canonical text). */
  check(text: string, what: string): string;
}

const stored = (initial: string, check: (text: string, what: string) => string): Stored => ({
  initial,
  check,
});
const count = (initial: number) => stored(String(initial), (t, w) => String(parseCount(t, w)));
const onOff = (initial: string) => stored(initial, (t, w) => (parseSwitch(t, w) ? "on" : "off"));

/**
 * The properties kept as text in the catalog. Retention defaults are snapper's timeline limits
 * (10 hourly, 10 daily, 0 weekly, 10 monthly, 10 yearly).
 */
const STORED = {
  timeline: onOff("off"),
  "timeline-interval": stored("1h", (t, w) => durationText(parseDuration(t, w))),
  "keep-hourly": count(10),
  "keep-daily": count(10),
  "keep-weekly": count(0),
  "keep-monthly": count(10),
  "keep-yearly": count(10),
  "keep-empty": onOff("on"),
  "cleanup-free": stored("off", (t, w) => {
    const share = parseShare(t, w);
    return share === null ? "off" : `${Math.round(share * 100)}%`;
  }),
} as const satisfies Record<string, Stored>;

type StoredName = keyof typeof STORED;
/** The two the store itself acts on, kept in the catalog's own fields. */
const STORE_SETTINGS = ["shadow-storage-limit", "on-full"] as const;

/** Every property, in the order `get` lists them. */
export const PROPERTIES: readonly string[] = [...STORE_SETTINGS, ...Object.keys(STORED)];

export interface PropertyValue {
  property: string;
  value: string;
  /** "local" when set on this volume, "default" when not. */
  source: "local" | "default";
}

/** The store's own settings, as the volume reports them. */
export interface StoreSettings {
  shadowStorageLimit: number;
  onFull: "delete-oldest" | "fail-writes";
}

/** Every property's value from the store's settings and its stored properties. */
export function propertyValues(
  settings: StoreSettings,
  props: Record<string, string>,
): PropertyValue[] {
  const out: PropertyValue[] = [
    {
      property: "shadow-storage-limit",
      value: settings.shadowStorageLimit === 0 ? "none" : sizeText(settings.shadowStorageLimit),
      source: settings.shadowStorageLimit === 0 ? "default" : "local",
    },
    {
      property: "on-full",
      value: settings.onFull,
      source: settings.onFull === "delete-oldest" ? "default" : "local",
    },
  ];
  for (const [name, p] of Object.entries(STORED) as Array<[StoredName, Stored]>) {
    const set = props[name];
    out.push({
      property: name,
      value: set ?? p.initial,
      source: set === undefined ? "default" : "local",
    });
  }
  return out;
}

/** A checked `set`: what changes in the store's settings, and the stored properties to write. */
export interface PropertyChange {
  limit?: number;
  onFull?: "delete-oldest" | "fail-writes";
  props: Record<string, string>;
}

/**
 * Checks `PROPERTY=VALUE` assignments, all of them before any is applied: EINVAL, in one line,
 * for an unknown property or a bad value.
 */
export function parseAssignments(assignments: readonly string[]): PropertyChange {
  if (assignments.length === 0) throw einval("nothing to set: give PROPERTY=VALUE");
  const change: PropertyChange = { props: {} };
  for (const a of assignments) {
    const eq = a.indexOf("=");
    if (eq <= 0) throw einval(`"${a}": expected PROPERTY=VALUE`);
    const name = a.slice(0, eq);
    const text = a.slice(eq + 1);
    if (name === "shadow-storage-limit") {
      change.limit = text === "none" ? 0 : parseSize(text, name);
    } else if (name === "on-full") {
      if (text !== "delete-oldest" && text !== "fail-writes")
        throw einval(`on-full "${text}": expected delete-oldest or fail-writes`);
      change.onFull = text;
    } else if (Object.hasOwn(STORED, name)) {
      change.props[name] = STORED[name as StoredName].check(text, name);
    } else {
      throw einval(`unknown property "${name}" (properties: ${PROPERTIES.join(", ")})`);
    }
  }
  return change;
}

/** EINVAL for a name that is not a property. */
export function checkPropertyNames(names: readonly string[]): void {
  for (const n of names)
    if (!PROPERTIES.includes(n))
      throw einval(`unknown property "${n}" (properties: ${PROPERTIES.join(", ")})`);
}

/** The timeline's settings from the stored properties (defaults where unset). */
export function timelineSettings(props: Record<string, string>): TimelineSettings {
  const v = (name: StoredName) => props[name] ?? STORED[name].initial;
  const n = (name: StoredName) => Number(v(name));
  return {
    enabled: v("timeline") === "on",
    intervalMs: parseDuration(v("timeline-interval"), "timeline-interval"),
    keep: {
      hourly: n("keep-hourly"),
      daily: n("keep-daily"),
      weekly: n("keep-weekly"),
      monthly: n("keep-monthly"),
      yearly: n("keep-yearly"),
    },
    keepEmpty: v("keep-empty") === "on",
    cleanupFree: parseShare(v("cleanup-free"), "cleanup-free"),
  };
}
