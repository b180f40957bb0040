// Seeded randomness for property tests: the seed comes from SEED or is drawn, and is printed on
// failure so a run can be repeated exactly. Never used to decide what a test asserts.

export type Rand = () => number;

/** mulberry32: small, fast, good enough to drive operation sequences. */
export function seeded(seed: number): Rand {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const int = (rand: Rand, lo: number, hi: number): number =>
  lo + Math.floor(rand() * (hi - lo + 1));

export const pick = <T>(rand: Rand, items: readonly T[]): T =>
  items[Math.floor(rand() * items.length)]!;

/**
 * A source of `n`-byte strings drawn from `seed` (a stream apart from a test's `rand`): the
 * SipHash keys of new directories (`OpenOptions.dirKeys`), so that names hash alike, and a seeded
 * run repeats exactly.
 */
export function seededBytes(seed: number, n: number): () => Buffer {
  const rand = seeded(seed);
  return () => Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));
}

/** Seeds for a test: SEED=n repeats one run; otherwise `count` fresh ones derived from a random base. */
export function seeds(count: number): number[] {
  const fixed = process.env.SEED;
  if (fixed !== undefined) return [Number(fixed)];
  const base = Math.floor(Math.random() * 2 ** 31);
  return Array.from({ length: count }, (_, i) => (base + i * 7919) >>> 0);
}

/** Runs `fn`; on failure rethrows with the seed to repeat it. */
export async function withSeed(seed: number, fn: (rand: Rand) => Promise<void>): Promise<void> {
  try {
    await fn(seeded(seed));
  } catch (e) {
    const err = e as Error;
    err.message = `${err.message}\n    repeat with SEED=${seed}`;
    throw err;
  }
}
