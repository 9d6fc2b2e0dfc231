//! The root search of the needle pass: every occurrence of every root, in one SIMD pass
//! over the lowercased data.
//!
//! It is Teddy (the literal search of Hyperscan and aho-corasick), run for all root
//! groups at once. Roots of one length form groups of up to eight buckets. For each of a
//! root's bytes a table gives the buckets whose roots may have that byte there; many
//! positions at a time, a position is a candidate for the buckets that every byte agrees
//! on, and each candidate is compared with its buckets' roots. aho-corasick's Teddy takes
//! one group per pass and returns one match per call; with several keyword occurrences
//! per kilobyte of ordinary text, the passes and the restarts after each match cost half
//! of the whole scan.
//!
//! Two kernels: with AVX-512 VBMI, 64 positions at a time, the tables indexed by the low
//! seven bits of a byte (exact for ASCII); with AVX2, 32 at a time, two 16-entry tables
//! per byte (low and high nibble), whose product lets more false candidates through.
//! Elsewhere no kernel runs, and the needle pass uses aho-corasick.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

/// Bytes kept readable past the end of the data: a 64-byte load from each of the last
/// positions, at each of four offsets.
const PAD: usize = 128;

/// Roots longer than this are not supported (every root the needle pass chooses has at
/// most four bytes).
pub(super) const MAX_ROOT: usize = 4;

/// At most this many groups of eight buckets: 4,096 roots.
const MAX_GROUPS: usize = 128;

/// Lowercased data followed by [`PAD`] zero bytes, so that the search may read past its
/// end. Kept per stream and refilled for each scan, so that scanning does not allocate.
#[derive(Debug, Default)]
pub(super) struct Lowered {
    buf: Vec<u8>,
    len: usize,
}

impl Lowered {
    pub fn fill(&mut self, data: &[u8]) {
        self.buf.clear();
        self.buf.extend(data.iter().map(u8::to_ascii_lowercase));
        self.len = data.len();
        self.buf.resize(self.len + PAD, 0);
    }

    /// The lowercased data (without the padding).
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Which kernel a [`RootFilter`] runs, from the one needing most of the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Kernel {
    Avx512,
    Avx2,
}

impl Kernel {
    /// The best kernel this CPU runs, if any.
    pub fn best() -> Option<Kernel> {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512bw") && has!("avx512vbmi") {
                return Some(Kernel::Avx512);
            }
            if has!("avx2") {
                return Some(Kernel::Avx2);
            }
        }
        None
    }

    /// Roots per group, and whether a bucket takes neighbours in bytewise order (they
    /// share prefixes) or the roots that keep its nibble tables small (see
    /// [`nibble_buckets`]). The more roots per bucket, the more false candidates; with the
    /// built-in detectors (see `throughput`), the exact tables did best with runs of 64
    /// roots per group, the nibble tables with 40 chosen by nibbles (a bucket's nibble
    /// tables pass every pairing of its nibbles: runs let through 4 times as many false
    /// candidates as round robin, which let through more than choosing by nibbles).
    fn grouping(self) -> (usize, bool) {
        match self {
            Kernel::Avx512 => (64, true),
            Kernel::Avx2 => (40, false),
        }
    }

    /// Whether this CPU runs the kernel.
    pub(super) fn available(self) -> bool {
        // A CPU with AVX-512 VBMI has AVX2 too.
        matches!(
            (Kernel::best(), self),
            (Some(Kernel::Avx512), _) | (Some(Kernel::Avx2), Kernel::Avx2)
        )
    }
}

/// Up to eight buckets of roots of one length.
#[derive(Debug)]
struct Group {
    len: usize,
    /// AVX-512: per root byte, for each value of a byte's low seven bits, the buckets
    /// whose roots may have that byte there.
    bytes: [[u8; 128]; MAX_ROOT],
    /// AVX2: per root byte, for each low nibble, then each high nibble, the buckets whose
    /// roots may have a byte with that nibble there; each table twice, for both 128-bit
    /// lanes.
    lo: [[u8; 32]; MAX_ROOT],
    hi: [[u8; 32]; MAX_ROOT],
    /// Per bucket: its roots, as (little-endian bytes, mask of the root's length, index).
    buckets: [Vec<(u32, u32, usize)>; 8],
}

/// All roots, searched in one pass.
#[derive(Debug)]
pub(super) struct RootFilter {
    groups: Vec<Group>,
    kernel: Kernel,
}

impl RootFilter {
    /// `roots` are lowercase, at most [`MAX_ROOT`] bytes each and distinct; found roots are
    /// named by their index in it. `None` when the CPU cannot run `kernel` or a root is
    /// empty or too long.
    pub fn new(roots: &[Vec<u8>], kernel: Kernel) -> Option<RootFilter> {
        if !kernel.available() || roots.iter().any(|r| r.is_empty() || r.len() > MAX_ROOT) {
            return None;
        }
        let (per_group, runs) = kernel.grouping();
        let mut order: Vec<usize> = (0..roots.len()).collect();
        order.sort_by(|&a, &b| (roots[a].len(), &roots[a]).cmp(&(roots[b].len(), &roots[b])));
        let mut groups = Vec::new();
        let mut at = 0;
        while at < order.len() {
            let len = roots[order[at]].len();
            let same = order[at..]
                .iter()
                .take_while(|&&r| roots[r].len() == len)
                .count();
            // Spread a run of one length evenly over as few groups as it needs.
            let size = same.div_ceil(same.div_ceil(per_group));
            for members in order[at..at + same].chunks(size) {
                groups.push(Group::new(roots, members, runs));
            }
            at += same;
        }
        (groups.len() <= MAX_GROUPS).then_some(RootFilter { groups, kernel })
    }

    /// Calls `found(position, root)` for every root occurring at a position before `end`
    /// in `data`: in order of position but within a block of positions, where it goes
    /// group by group.
    pub fn find(&self, data: &Lowered, end: usize, mut found: impl FnMut(usize, usize)) {
        let end = end.min(data.len);
        let (groups, buf, len) = (&self.groups[..], &data.buf[..], data.len);
        match self.kernel {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `new` checked that the CPU runs the kernel; `Lowered` keeps PAD
            // readable bytes after `len`, and `end <= len`.
            Kernel::Avx512 => unsafe { avx512::find(groups, buf, len, end, &mut found) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Kernel::Avx2 => unsafe { avx2::find(groups, buf, len, end, &mut found) },
            // `new` builds no filter where no kernel runs.
            #[cfg(not(target_arch = "x86_64"))]
            _ => {
                let _ = (groups, buf, len, end, &mut found);
                unreachable!("no kernel runs on this architecture")
            }
        }
    }
}

impl Group {
    /// The group of roots `members` (sorted): in buckets of neighbours if `runs`, else as
    /// [`nibble_buckets`] puts them.
    fn new(roots: &[Vec<u8>], members: &[usize], runs: bool) -> Group {
        let len = roots[members[0]].len();
        let mut g = Group {
            len,
            bytes: [[0; 128]; MAX_ROOT],
            lo: [[0; 32]; MAX_ROOT],
            hi: [[0; 32]; MAX_ROOT],
            buckets: Default::default(),
        };
        let per_bucket = members.len().div_ceil(8);
        let assigned = if runs {
            (0..members.len()).map(|k| k / per_bucket).collect()
        } else {
            nibble_buckets(roots, members, len)
        };
        for (&r, &bucket) in members.iter().zip(&assigned) {
            let bit = 1u8 << bucket;
            let root = &roots[r];
            for (j, &b) in root.iter().enumerate() {
                g.bytes[j][usize::from(b & 0x7f)] |= bit;
                let (lo, hi) = (usize::from(b & 15), usize::from(b >> 4));
                for lane in [0, 16] {
                    g.lo[j][lane + lo] |= bit;
                    g.hi[j][lane + hi] |= bit;
                }
            }
            let mut word = [0u8; 4];
            word[..len].copy_from_slice(root);
            let mask = u32::MAX >> (8 * (4 - len));
            g.buckets[bucket].push((u32::from_le_bytes(word), mask, r));
        }
        g
    }
}

/// Buckets for `members` (roots `len` bytes long) that keep each bucket's nibble tables
/// small: each root goes, in turn, to the bucket (with room) whose chance of passing a
/// position of ordinary text grows least. A bucket passes a byte when the byte's low
/// nibble and its high nibble are each those of some root byte there; the chance
/// weighs bytes roughly as they come in lowercased text.
fn nibble_buckets(roots: &[Vec<u8>], members: &[usize], len: usize) -> Vec<usize> {
    fn weight(b: u8) -> f64 {
        match b {
            b'a'..=b'z' => 3.0,
            b'0'..=b'9' => 1.0,
            b' ' | b'_' | b'-' | b'.' | b':' | b'/' | b'=' | b',' | b'\'' | b'"' | b'\n' => 2.0,
            _ => 0.1,
        }
    }
    let total: f64 = (0..=255u8).map(weight).sum();
    // Per bucket, per root byte: the low and the high nibbles seen, as bit sets.
    type Nibbles = [(u16, u16); MAX_ROOT];
    let chance = |s: &Nibbles| -> f64 {
        s[..len]
            .iter()
            .map(|&(lo, hi)| {
                let passes = |b: &u8| lo & (1 << (b & 15)) != 0 && hi & (1 << (b >> 4)) != 0;
                (0..=255u8).filter(passes).map(weight).sum::<f64>() / total
            })
            .product()
    };
    let room = members.len().div_ceil(8);
    let mut sets = [[(0u16, 0u16); MAX_ROOT]; 8];
    let mut count = [0usize; 8];
    let mut out = Vec::with_capacity(members.len());
    for &r in members {
        let with = |s: &Nibbles| {
            let mut s = *s;
            for (j, &b) in roots[r].iter().enumerate() {
                s[j].0 |= 1 << (b & 15);
                s[j].1 |= 1 << (b >> 4);
            }
            s
        };
        let grow: Vec<f64> = (0..8)
            .map(|k| chance(&with(&sets[k])) - chance(&sets[k]))
            .collect();
        let best = (0..8)
            .filter(|&b| count[b] < room)
            .min_by(|&a, &b| grow[a].total_cmp(&grow[b]).then(count[a].cmp(&count[b])))
            .unwrap_or(0);
        sets[best] = with(&sets[best]);
        count[best] += 1;
        out.push(best);
    }
    out
}

/// Compares the candidates of the block at `i` with their buckets' roots: per group, the
/// candidate positions (`masks`, bit k for position `i + k`) and the buckets at each
/// (`lanes`). Out of line, so that the search loop stays small.
#[inline(never)]
fn check(
    groups: &[Group],
    lanes: &[[u8; 64]; MAX_GROUPS],
    masks: &[u64; MAX_GROUPS],
    buf: &[u8],
    i: usize,
    len: usize,
    found: &mut dyn FnMut(usize, usize),
) {
    for ((g, lane), &mask) in groups.iter().zip(lanes).zip(masks) {
        let mut candidates = mask;
        'candidates: while candidates != 0 {
            let k = candidates.trailing_zeros() as usize;
            candidates &= candidates - 1;
            let pos = i + k;
            if pos + g.len > len {
                continue;
            }
            // pos < len, so pos + 4 <= buf.len().
            let word = u32::from_le_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]);
            let mut bits = lane[k];
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                for &(root, mask, index) in &g.buckets[b] {
                    if word & mask == root {
                        found(pos, index);
                        // A group's roots are distinct and of one length: no other
                        // one is here.
                        continue 'candidates;
                    }
                }
            }
        }
    }
}

/// Positions `i .. i + width` that are before `end`, as a bit mask.
fn valid(i: usize, end: usize, width: usize) -> u64 {
    if end - i >= width {
        u64::MAX >> (64 - width)
    } else {
        (1u64 << (end - i)) - 1
    }
}
