//! The AVX2 kernel of the root search: 32 positions at a time, nibble tables.

use std::arch::x86_64::{
    __m256i, _mm256_and_si256, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8,
    _mm256_or_si256, _mm256_set1_epi8, _mm256_setzero_si256, _mm256_shuffle_epi8,
    _mm256_srli_epi16, _mm256_storeu_si256,
};

use super::{Group, MAX_GROUPS, MAX_ROOT, PAD, check, valid};

/// Calls `found` for every root at a position before `end`.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn find(
    groups: &[Group],
    buf: &[u8],
    len: usize,
    end: usize,
    found: &mut dyn FnMut(usize, usize),
) {
    assert!(end <= len && len + PAD <= buf.len() && groups.len() <= MAX_GROUPS);
    let nibble = _mm256_set1_epi8(0x0f);
    let mut lanes = [[0u8; 64]; MAX_GROUPS];
    let mut masks = [0u64; MAX_GROUPS];
    let mut i = 0;
    while i < end {
        // Bytes i + j .. i + j + 32, split into nibbles, for each root byte j.
        let mut lo = [_mm256_setzero_si256(); MAX_ROOT];
        let mut hi = [_mm256_setzero_si256(); MAX_ROOT];
        for j in 0..MAX_ROOT {
            // SAFETY: i < end <= len, so i + j + 32 <= len + 35 <= buf.len().
            let v = unsafe { _mm256_loadu_si256(buf.as_ptr().add(i + j).cast::<__m256i>()) };
            lo[j] = _mm256_and_si256(v, nibble);
            hi[j] = _mm256_and_si256(_mm256_srli_epi16::<4>(v), nibble);
        }
        let mut any = _mm256_setzero_si256();
        for (g, lane) in groups.iter().zip(lanes.iter_mut()) {
            let acc = match g.len {
                1 => buckets::<1>(g, &lo, &hi),
                2 => buckets::<2>(g, &lo, &hi),
                3 => buckets::<3>(g, &lo, &hi),
                _ => buckets::<4>(g, &lo, &hi),
            };
            // SAFETY: a lane is 64 writable bytes; this writes the first 32, unaligned.
            unsafe { _mm256_storeu_si256(lane.as_mut_ptr().cast::<__m256i>(), acc) };
            any = _mm256_or_si256(any, acc);
        }
        // Candidates are rare: find which groups have some only when there are.
        if nonzero(any) != 0 {
            let valid = valid(i, end, 32);
            for (lane, mask) in lanes.iter().zip(masks.iter_mut()).take(groups.len()) {
                // SAFETY: 32 of a lane's 64 readable bytes, read unaligned.
                let acc = unsafe { _mm256_loadu_si256(lane.as_ptr().cast::<__m256i>()) };
                *mask = nonzero(acc) & valid;
            }
            check(groups, &lanes, &masks, buf, i, len, found);
        }
        i += 32;
    }
}

/// Bit k set where byte k of `v` is not zero.
#[target_feature(enable = "avx2")]
fn nonzero(v: __m256i) -> u64 {
    let zero = _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, _mm256_setzero_si256()));
    u64::from(!(zero as u32))
}

/// The buckets each of the 32 positions is a candidate for in group `g` (of roots `L`
/// bytes long).
#[target_feature(enable = "avx2")]
#[inline]
fn buckets<const L: usize>(
    g: &Group,
    lo: &[__m256i; MAX_ROOT],
    hi: &[__m256i; MAX_ROOT],
) -> __m256i {
    let mut acc = _mm256_and_si256(
        _mm256_shuffle_epi8(table(&g.lo[0]), lo[0]),
        _mm256_shuffle_epi8(table(&g.hi[0]), hi[0]),
    );
    for j in 1..L {
        acc = _mm256_and_si256(acc, _mm256_shuffle_epi8(table(&g.lo[j]), lo[j]));
        acc = _mm256_and_si256(acc, _mm256_shuffle_epi8(table(&g.hi[j]), hi[j]));
    }
    acc
}

/// A nibble table, both lanes.
#[target_feature(enable = "avx2")]
#[inline]
fn table(t: &[u8; 32]) -> __m256i {
    // SAFETY: `t` is 32 readable bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(t.as_ptr().cast::<__m256i>()) }
}
