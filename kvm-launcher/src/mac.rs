//! The guest NIC's MAC address, chosen by cork: locally administered, unicast, and stable
//! for a given seed (the bottle), so the anti-spoofing rules can name it before QEMU runs.

use std::fmt;

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// A locally administered unicast address derived from `seed` (FNV-1a, so the same
    /// seed gives the same address on every run and every build).
    pub fn local(seed: &[u8]) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in seed {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let b = h.to_be_bytes();
        // Bit 1 of the first octet: locally administered; bit 0 clear: unicast.
        Mac([(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]])
    }

    pub fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_macs_are_unicast_locally_administered_and_stable() {
        for seed in ["a", "ck12ab34-web", ""] {
            let m = Mac::local(seed.as_bytes());
            assert_eq!(m.0[0] & 0x03, 0x02, "{m}");
            assert_eq!(m, Mac::local(seed.as_bytes()));
        }
        assert_ne!(Mac::local(b"a"), Mac::local(b"b"));
        assert_eq!(Mac([2, 0, 0xab, 1, 2, 3]).to_string(), "02:00:ab:01:02:03");
    }
}
