//! The packet marks a VM bottle's tc program sets on the guest's packets, and nftables
//! acts on: the one place their values are written down on the Rust side.
//!
//! The tc program on the tap's ingress judges every guest packet with the bottle's policy
//! maps and, for a packet it lets through, writes one verdict into the [`MARK_MASK`] bits
//! of `skb->mark` (`mark = (mark & ~MARK_MASK) | verdict`); everything else it drops. The
//! nftables rules then only route the verdict (DNAT to a proxy, input to the host,
//! forwarding) and never decide policy again. A packet whose bits hold none of the values
//! below matches no accepting rule and is dropped: fail closed.
//!
//! The bits are a 4-bit field, 0x0f000000: clear of the marks other software on a
//! developer's host commonly uses (kube-proxy 0x4000/0x8000, Tailscale 0xff0000, Cilium
//! 0x0f00, WireGuard's 51820), and values, not flags, because a packet has exactly one
//! verdict. The C side (`ebpf/include/cork_abi.h`) must carry the same numbers.

/// The bits of `skb->mark` that hold cork's verdict.
pub const MARK_MASK: u32 = 0x0f00_0000;
/// UDP or TCP to port 53 at any address: DNAT to the bottle's DNS proxy.
pub const MARK_DNS: u32 = 0x0100_0000;
/// TCP to a port the policy sends through the inspecting proxy: DNAT to it.
pub const MARK_INSPECT: u32 = 0x0200_0000;
/// TCP or UDP to an allowed host port on a gateway address: input to the host.
pub const MARK_HOST_PORT: u32 = 0x0300_0000;
/// Allowed as is: forwarded (and masqueraded) unchanged.
pub const MARK_DIRECT: u32 = 0x0400_0000;

/// The mark values a plan matches on; [`Marks::CORK`] is what the tc program sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marks {
    pub mask: u32,
    pub dns: u32,
    pub inspect: u32,
    pub host_port: u32,
    pub direct: u32,
}

impl Marks {
    /// cork's marks (the constants above).
    pub const CORK: Marks = Marks {
        mask: MARK_MASK,
        dns: MARK_DNS,
        inspect: MARK_INSPECT,
        host_port: MARK_HOST_PORT,
        direct: MARK_DIRECT,
    };

    /// Whether the values are distinct, nonzero and inside the mask.
    pub(crate) fn is_valid(&self) -> bool {
        let values = [self.dns, self.inspect, self.host_port, self.direct];
        values.iter().all(|&v| v != 0 && v & !self.mask == 0)
            && values
                .iter()
                .enumerate()
                .all(|(i, v)| !values[i + 1..].contains(v))
    }
}

impl Default for Marks {
    fn default() -> Self {
        Marks::CORK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cork_marks_are_valid_and_others_are_not() {
        assert!(Marks::CORK.is_valid());
        let same = Marks {
            inspect: MARK_DNS,
            ..Marks::CORK
        };
        assert!(!same.is_valid());
        let outside = Marks {
            direct: 0x1000_0000,
            ..Marks::CORK
        };
        assert!(!outside.is_valid());
    }
}
