//! Deterministic randomness: one PCG stream per (seed, table, chunk), so
//! any row can be regenerated without the rows before it.

use super::*;

pub(super) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The PCG stream of one chunk of one table.
pub(super) fn rng_for(seed: u64, stream: u64, chunk: u64) -> Pcg64 {
    let a = splitmix64(seed);
    let b = splitmix64(a ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    let c = splitmix64(b ^ chunk);
    let d = splitmix64(c ^ 0x5851_F42D_4C95_7F2D);
    Pcg64::new(((c as u128) << 64) | d as u128, stream as u128)
}

/// Maps a uniform 64-bit `x` onto `0..n` (multiply-shift).
pub(super) fn below(x: u64, n: u64) -> u64 {
    ((x as u128 * n as u128) >> 64) as u64
}

/// Maps a uniform 32-bit `x` onto `0..n` (multiply-shift).
pub(super) fn below32(x: u32, n: u32) -> u32 {
    ((x as u64 * n as u64) >> 32) as u32
}

pub(super) fn draw(rng: &mut Pcg64, n: u64) -> u64 {
    below(rng.next_u64(), n)
}
