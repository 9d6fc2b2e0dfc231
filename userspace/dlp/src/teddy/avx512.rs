//! The AVX-512 VBMI kernel of the root search: 64 positions at a time (four blocks of
//! them per loaded table where there are), each root byte
//! looked up in a 128-entry table by the low seven bits of the data byte (`vpermi2b`),
//! exact for ASCII. Bytes from 0x80 share the entry of their low seven bits: that only
//! lets a false candidate through, which the comparison with the root rejects.

use std::arch::x86_64::{
    __m512i, _mm512_and_si512, _mm512_loadu_si512, _mm512_or_si512, _mm512_permutex2var_epi8,
    _mm512_setzero_si512, _mm512_storeu_si512, _mm512_test_epi8_mask,
};

use super::{Group, MAX_GROUPS, MAX_ROOT, PAD, check, valid};

/// Calls `found` for every root at a position before `end`.
///
/// # Safety
/// The CPU must have AVX-512 F, BW and VBMI.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
pub(super) unsafe fn find(
    groups: &[Group],
    buf: &[u8],
    len: usize,
    end: usize,
    found: &mut dyn FnMut(usize, usize),
) {
    assert!(end <= len && len + PAD <= buf.len() && groups.len() <= MAX_GROUPS);
    let mut lanes = [[0u8; 64]; MAX_GROUPS];
    let mut blocks = [[[0u8; 64]; MAX_GROUPS]; BLOCKS];
    let mut masks = [0u64; MAX_GROUPS];
    let mut i = 0;
    while i < end {
        // BLOCKS blocks at a time where all start before `end`: each group's tables are
        // loaded once for them (their loads were most of the loop's time).
        if end - i > 64 * (BLOCKS - 1) {
            let mut v = [[_mm512_setzero_si512(); MAX_ROOT]; BLOCKS];
            for (k, v) in v.iter_mut().enumerate() {
                for (j, v) in v.iter_mut().enumerate() {
                    // SAFETY: i + 64 * k < end <= len, so the load ends by len + 67 <=
                    // buf.len().
                    *v = unsafe {
                        _mm512_loadu_si512(buf.as_ptr().add(i + 64 * k + j).cast::<__m512i>())
                    };
                }
            }
            let mut any = [_mm512_setzero_si512(); BLOCKS];
            for (n, g) in groups.iter().enumerate() {
                let acc = match g.len {
                    1 => buckets_n::<1>(g, &v),
                    2 => buckets_n::<2>(g, &v),
                    3 => buckets_n::<3>(g, &v),
                    _ => buckets_n::<4>(g, &v),
                };
                for k in 0..BLOCKS {
                    // SAFETY: a lane is 64 writable bytes, written unaligned.
                    unsafe {
                        _mm512_storeu_si512(blocks[k][n].as_mut_ptr().cast::<__m512i>(), acc[k])
                    };
                    any[k] = _mm512_or_si512(any[k], acc[k]);
                }
            }
            for k in 0..BLOCKS {
                if _mm512_test_epi8_mask(any[k], any[k]) != 0 {
                    report(
                        groups,
                        &blocks[k],
                        &mut masks,
                        buf,
                        i + 64 * k,
                        len,
                        end,
                        found,
                    );
                }
            }
            i += 64 * BLOCKS;
            continue;
        }
        // Bytes i + j .. i + j + 64, for each root byte j.
        let mut v = [_mm512_setzero_si512(); MAX_ROOT];
        for (j, v) in v.iter_mut().enumerate() {
            // SAFETY: i < end <= len, so i + j + 64 <= len + 67 <= buf.len().
            *v = unsafe { _mm512_loadu_si512(buf.as_ptr().add(i + j).cast::<__m512i>()) };
        }
        let mut any = _mm512_setzero_si512();
        for (g, lane) in groups.iter().zip(lanes.iter_mut()) {
            let acc = match g.len {
                1 => buckets::<1>(g, &v),
                2 => buckets::<2>(g, &v),
                3 => buckets::<3>(g, &v),
                _ => buckets::<4>(g, &v),
            };
            // SAFETY: a lane is 64 writable bytes, written unaligned.
            unsafe { _mm512_storeu_si512(lane.as_mut_ptr().cast::<__m512i>(), acc) };
            any = _mm512_or_si512(any, acc);
        }
        // Candidates are rare: find which groups have some only when there are.
        if _mm512_test_epi8_mask(any, any) != 0 {
            report(groups, &lanes, &mut masks, buf, i, len, end, found);
        }
        i += 64;
    }
}

/// Finds which groups have candidates in the block at `i` (their `lanes`) and compares
/// those with their roots.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
#[allow(clippy::too_many_arguments)]
fn report(
    groups: &[Group],
    lanes: &[[u8; 64]; MAX_GROUPS],
    masks: &mut [u64; MAX_GROUPS],
    buf: &[u8],
    i: usize,
    len: usize,
    end: usize,
    found: &mut dyn FnMut(usize, usize),
) {
    let valid = valid(i, end, 64);
    for (lane, mask) in lanes.iter().zip(masks.iter_mut()).take(groups.len()) {
        let acc = table(lane);
        *mask = _mm512_test_epi8_mask(acc, acc) & valid;
    }
    check(groups, lanes, masks, buf, i, len, found);
}

/// Blocks of 64 positions looked up per load of a group's tables.
const BLOCKS: usize = 4;

/// [`buckets`] for [`BLOCKS`] blocks of 64 positions, loading the tables once.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
#[inline]
fn buckets_n<const L: usize>(g: &Group, v: &[[__m512i; MAX_ROOT]; BLOCKS]) -> [__m512i; BLOCKS] {
    let mut acc = [_mm512_setzero_si512(); BLOCKS];
    for (j, bytes) in g.bytes.iter().enumerate().take(L) {
        let (low, high) = bytes.split_at(64);
        let (low, high) = (table(low), table(high));
        for (acc, v) in acc.iter_mut().zip(v) {
            let hit = _mm512_permutex2var_epi8(low, v[j], high);
            *acc = if j == 0 {
                hit
            } else {
                _mm512_and_si512(*acc, hit)
            };
        }
    }
    acc
}

/// The buckets each of the 64 positions is a candidate for in group `g` (of roots `L`
/// bytes long).
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
#[inline]
fn buckets<const L: usize>(g: &Group, v: &[__m512i; MAX_ROOT]) -> __m512i {
    let lookup = |j: usize| {
        let (low, high) = g.bytes[j].split_at(64);
        _mm512_permutex2var_epi8(table(low), v[j], table(high))
    };
    let mut acc = lookup(0);
    for j in 1..L {
        acc = _mm512_and_si512(acc, lookup(j));
    }
    acc
}

/// 64 bytes of a table.
#[target_feature(enable = "avx512f")]
#[inline]
fn table(t: &[u8]) -> __m512i {
    assert!(t.len() >= 64);
    // SAFETY: `t` has at least 64 readable bytes; the load is unaligned.
    unsafe { _mm512_loadu_si512(t.as_ptr().cast::<__m512i>()) }
}
