//! MD5 of many short messages, four at a time: the hash keys of a request's partition keys.
//!
//! One MD5 of a short key is a chain of 64 dependent steps, so a CPU running it alone waits on
//! each step's latency with most of its execution units idle. Four independent keys, their
//! steps interleaved, fill those units: on the machines measured (`benches/aws_floor.rs`) this
//! is 2-3x the throughput of hashing the keys one by one, in plain safe code (no target features,
//! so the same on every architecture). Keys up to [`SHORT_MAX`] bytes fit one MD5 block and go
//! through the four-way path; longer ones are hashed one by one with the `md-5` crate. The result
//! is MD5 exactly (RFC 1321; tests compare it with the `md-5` crate).

use super::hash::md5;

/// The longest message that fits one MD5 block with its padding (64 - 1 - 8 bytes).
pub const SHORT_MAX: usize = 55;

/// Lanes hashed together.
const LANES: usize = 4;

type Lanes = [u32; LANES];

/// The per-step constants: `floor(abs(sin(i + 1)) * 2^32)` (a test recomputes them).
const K: [u32; 64] = [
    0xd76a_a478,
    0xe8c7_b756,
    0x2420_70db,
    0xc1bd_ceee,
    0xf57c_0faf,
    0x4787_c62a,
    0xa830_4613,
    0xfd46_9501,
    0x6980_98d8,
    0x8b44_f7af,
    0xffff_5bb1,
    0x895c_d7be,
    0x6b90_1122,
    0xfd98_7193,
    0xa679_438e,
    0x49b4_0821,
    0xf61e_2562,
    0xc040_b340,
    0x265e_5a51,
    0xe9b6_c7aa,
    0xd62f_105d,
    0x0244_1453,
    0xd8a1_e681,
    0xe7d3_fbc8,
    0x21e1_cde6,
    0xc337_07d6,
    0xf4d5_0d87,
    0x455a_14ed,
    0xa9e3_e905,
    0xfcef_a3f8,
    0x676f_02d9,
    0x8d2a_4c8a,
    0xfffa_3942,
    0x8771_f681,
    0x6d9d_6122,
    0xfde5_380c,
    0xa4be_ea44,
    0x4bde_cfa9,
    0xf6bb_4b60,
    0xbebf_bc70,
    0x289b_7ec6,
    0xeaa1_27fa,
    0xd4ef_3085,
    0x0488_1d05,
    0xd9d4_d039,
    0xe6db_99e5,
    0x1fa2_7cf8,
    0xc4ac_5665,
    0xf429_2244,
    0x432a_ff97,
    0xab94_23a7,
    0xfc93_a039,
    0x655b_59c3,
    0x8f0c_cc92,
    0xffef_f47d,
    0x8584_5dd1,
    0x6fa8_7e4f,
    0xfe2c_e6e0,
    0xa301_4314,
    0x4e08_11a1,
    0xf753_7e82,
    0xbd3a_f235,
    0x2ad7_d2bb,
    0xeb86_d391,
];

/// The initial state (A, B, C, D).
const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

fn f(x: u32, y: u32, z: u32) -> u32 {
    z ^ (x & (y ^ z))
}

fn g(x: u32, y: u32, z: u32) -> u32 {
    y ^ (z & (x ^ y))
}

fn h(x: u32, y: u32, z: u32) -> u32 {
    x ^ y ^ z
}

fn i(x: u32, y: u32, z: u32) -> u32 {
    y ^ (x | !z)
}

/// One MD5 step in every lane: `b + rotl(a + fun(b, c, d) + k + x, S)`.
// Five arrays indexed in lockstep: an index loop is the clearest form.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn step<const S: u32>(
    a: &Lanes,
    b: &Lanes,
    c: &Lanes,
    d: &Lanes,
    k: u32,
    x: &Lanes,
    fun: impl Fn(u32, u32, u32) -> u32,
) -> Lanes {
    let mut out = [0u32; LANES];
    for l in 0..LANES {
        out[l] = b[l].wrapping_add(
            a[l].wrapping_add(fun(b[l], c[l], d[l]))
                .wrapping_add(k)
                .wrapping_add(x[l])
                .rotate_left(S),
        );
    }
    out
}

/// The MD5 digests of four messages of at most [`SHORT_MAX`] bytes each (one block each).
fn digest4(msgs: [&[u8]; LANES]) -> [[u8; 16]; LANES] {
    // The padded block of every lane, as 16 little-endian words, word-major.
    let mut w = [[0u32; LANES]; 16];
    for (l, m) in msgs.iter().enumerate() {
        let mut block = [0u8; 64];
        let n = m.len().min(SHORT_MAX);
        block[..n].copy_from_slice(&m[..n]);
        block[n] = 0x80;
        block[56..].copy_from_slice(&((n as u64) * 8).to_le_bytes());
        for (j, word) in block.chunks_exact(4).enumerate() {
            w[j][l] = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        }
    }
    let [mut a, mut b, mut c, mut d] = INIT.map(|v| [v; LANES]);
    for r in 0..4 {
        let s = 4 * r;
        a = step::<7>(&a, &b, &c, &d, K[s], &w[s], f);
        d = step::<12>(&d, &a, &b, &c, K[s + 1], &w[s + 1], f);
        c = step::<17>(&c, &d, &a, &b, K[s + 2], &w[s + 2], f);
        b = step::<22>(&b, &c, &d, &a, K[s + 3], &w[s + 3], f);
    }
    for r in 0..4 {
        let s = 16 + 4 * r;
        a = step::<5>(&a, &b, &c, &d, K[s], &w[(5 * s + 1) % 16], g);
        d = step::<9>(&d, &a, &b, &c, K[s + 1], &w[(5 * s + 6) % 16], g);
        c = step::<14>(&c, &d, &a, &b, K[s + 2], &w[(5 * s + 11) % 16], g);
        b = step::<20>(&b, &c, &d, &a, K[s + 3], &w[(5 * s + 16) % 16], g);
    }
    for r in 0..4 {
        let s = 32 + 4 * r;
        a = step::<4>(&a, &b, &c, &d, K[s], &w[(3 * s + 5) % 16], h);
        d = step::<11>(&d, &a, &b, &c, K[s + 1], &w[(3 * s + 8) % 16], h);
        c = step::<16>(&c, &d, &a, &b, K[s + 2], &w[(3 * s + 11) % 16], h);
        b = step::<23>(&b, &c, &d, &a, K[s + 3], &w[(3 * s + 14) % 16], h);
    }
    for r in 0..4 {
        let s = 48 + 4 * r;
        a = step::<6>(&a, &b, &c, &d, K[s], &w[(7 * s) % 16], i);
        d = step::<10>(&d, &a, &b, &c, K[s + 1], &w[(7 * s + 7) % 16], i);
        c = step::<15>(&c, &d, &a, &b, K[s + 2], &w[(7 * s + 14) % 16], i);
        b = step::<21>(&b, &c, &d, &a, K[s + 3], &w[(7 * s + 21) % 16], i);
    }
    let mut out = [[0u8; 16]; LANES];
    for (l, digest) in out.iter_mut().enumerate() {
        let words = [a[l], b[l], c[l], d[l]];
        for (j, (word, init)) in words.iter().zip(INIT).enumerate() {
            digest[4 * j..4 * j + 4].copy_from_slice(&word.wrapping_add(init).to_le_bytes());
        }
    }
    out
}

/// The hash keys (MD5 as a big-endian integer, as [`super::hash::hash_key`]) of `keys`,
/// appended to `out` in the same order.
pub fn hash_keys<T: AsRef<[u8]>>(keys: &[T], out: &mut Vec<u128>) {
    let first = out.len();
    out.resize(first + keys.len(), 0);
    let out = &mut out[first..];
    // Up to four short keys waiting for a four-way digest, with where their results go.
    let mut lanes: [&[u8]; LANES] = [&[]; LANES];
    let mut at = [0usize; LANES];
    let mut n = 0;
    for (index, key) in keys.iter().enumerate() {
        let key = key.as_ref();
        if key.len() > SHORT_MAX {
            out[index] = u128::from_be_bytes(md5(key));
            continue;
        }
        lanes[n] = key;
        at[n] = index;
        n += 1;
        if n == LANES {
            for (digest, &index) in digest4(lanes).iter().zip(&at) {
                out[index] = u128::from_be_bytes(*digest);
            }
            n = 0;
        }
    }
    if n > 0 {
        for (digest, &index) in digest4(lanes).iter().zip(&at).take(n) {
            out[index] = u128::from_be_bytes(*digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::kinesis::hash::hash_key;
    use proptest::prelude::*;

    #[test]
    fn constants_are_the_sines() {
        for (n, k) in K.iter().enumerate() {
            let want = (((n + 1) as f64).sin().abs() * 4_294_967_296.0) as u32;
            assert_eq!(*k, want, "K[{n}]");
        }
    }

    #[test]
    fn known_digests_at_every_lane_and_length() {
        let keys: Vec<Vec<u8>> = (0..=SHORT_MAX + 10).map(|n| vec![b'k'; n]).collect();
        let mut out = Vec::new();
        hash_keys(&keys, &mut out);
        for (key, got) in keys.iter().zip(&out) {
            assert_eq!(*got, hash_key(key), "length {}", key.len());
        }
        let mut out = vec![7];
        hash_keys(&["", "a", "abc"], &mut out);
        assert_eq!(
            out,
            [
                7,
                0xd41d_8cd9_8f00_b204_e980_0998_ecf8_427e,
                0x0cc1_75b9_c0f1_b6a8_31c3_99e2_6977_2661,
                0x9001_5098_3cd2_4fb0_d696_3f7d_28e1_7f72
            ]
        );
        hash_keys::<&str>(&[], &mut out);
        assert_eq!(out.len(), 4);
    }

    proptest! {
        #[test]
        fn every_key_hashes_as_md5_does(
            keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..140), 0..23)
        ) {
            let mut out = Vec::new();
            hash_keys(&keys, &mut out);
            prop_assert_eq!(out.len(), keys.len());
            for (key, got) in keys.iter().zip(&out) {
                prop_assert_eq!(*got, hash_key(key));
            }
        }
    }
}
