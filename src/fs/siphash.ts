// SipHash-2-4 in plain JavaScript (64-bit arithmetic on 32-bit halves): the keyed hash that
// places directory names, so that names cannot be chosen from outside to collide.

/** SipHash-2-4 state: v0..v3 as (low, high) 32-bit halves. */
const S = new Uint32Array(8);

function add(a: number, b: number): void {
  const lo = (S[a]! + S[b]!) >>> 0;
  S[a + 1] = S[a + 1]! + S[b + 1]! + (lo < S[a]! ? 1 : 0);
  S[a] = lo;
}

function rotl(a: number, n: number): void {
  const lo = S[a]!;
  const hi = S[a + 1]!;
  S[a] = n === 32 ? hi : (lo << n) | (hi >>> (32 - n));
  S[a + 1] = n === 32 ? lo : (hi << n) | (lo >>> (32 - n));
}

function xor(a: number, b: number): void {
  S[a]! ^= S[b]!;
  S[a + 1]! ^= S[b + 1]!;
}

function round(): void {
  add(0, 2);
  rotl(2, 13);
  xor(2, 0);
  rotl(0, 32);
  add(4, 6);
  rotl(6, 16);
  xor(6, 4);
  add(0, 6);
  rotl(6, 21);
  xor(6, 0);
  add(4, 2);
  rotl(2, 17);
  xor(2, 4);
  rotl(4, 32);
}

function word(m: Uint8Array, i: number): number {
  return (m[i]! | (m[i + 1]! << 8) | (m[i + 2]! << 16) | (m[i + 3]! << 24)) >>> 0;
}

function compress(lo: number, hi: number, rounds: number): void {
  S[6]! ^= lo;
  S[7]! ^= hi;
  for (let r = 0; r < rounds; r++) round();
  S[0]! ^= lo;
  S[1]! ^= hi;
}

/** Runs SipHash-2-4 of `m` under the 16-byte `key`; the result is v0^v1^v2^v3 of `S`. */
function sip(key: Uint8Array, m: Uint8Array): void {
  const [k0, k1, k2, k3] = [word(key, 0), word(key, 4), word(key, 8), word(key, 12)];
  S.set([k0 ^ 0x70736575, k1 ^ 0x736f6d65, k2 ^ 0x6e646f6d, k3 ^ 0x646f7261]);
  S.set([k0 ^ 0x6e657261, k1 ^ 0x6c796765, k2 ^ 0x79746573, k3 ^ 0x74656462], 4);
  const full = m.length & ~7;
  for (let i = 0; i < full; i += 8) compress(word(m, i), word(m, i + 4), 2);
  let lo = 0;
  let hi = (m.length & 0xff) << 24;
  for (let j = 0; full + j < m.length; j++) {
    if (j < 4) lo |= m[full + j]! << (8 * j);
    else hi |= m[full + j]! << (8 * (j - 4));
  }
  compress(lo >>> 0, hi >>> 0, 2);
  S[4]! ^= 0xff;
  for (let r = 0; r < 4; r++) round();
}

/** SipHash-2-4 of `data` under a 16-byte key, as an unsigned 64-bit integer. */
export function sipHash24(key: Uint8Array, data: Uint8Array): bigint {
  sip(key, data);
  const lo = (S[0]! ^ S[2]! ^ S[4]! ^ S[6]!) >>> 0;
  const hi = (S[1]! ^ S[3]! ^ S[5]! ^ S[7]!) >>> 0;
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** The top 46 bits of SipHash-2-4 of `data`, as a safe integer (no BigInt on the hot path). */
export function sipHash46(key: Uint8Array, data: Uint8Array): number {
  sip(key, data);
  return (
    ((S[1]! ^ S[3]! ^ S[5]! ^ S[7]!) >>> 0) * 2 ** 14 + ((S[0]! ^ S[2]! ^ S[4]! ^ S[6]!) >>> 18)
  );
}
