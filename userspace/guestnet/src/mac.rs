//! [`MacAddr`]: an Ethernet address, as DHCP's `chaddr` and NDP's link-layer options carry
//! it, with the `aa:bb:cc:dd:ee:ff` text form for configuration and logs.

use std::fmt;
use std::str::FromStr;

/// A 48-bit Ethernet (EUI-48) address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The six bytes, in wire order.
    pub fn octets(self) -> [u8; 6] {
        self.0
    }

    /// A unicast address (group bit clear) that is not all zeros: the only kind a NIC has.
    pub fn is_unicast(self) -> bool {
        self.0[0] & 0x01 == 0 && self.0 != [0; 6]
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(octets: [u8; 6]) -> Self {
        Self(octets)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Text that is not six colon-separated hex bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a MAC address (expected six hex bytes like 02:00:00:00:00:01)")]
pub struct MacParseError {
    /// The rejected text.
    pub text: String,
}

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError {
            text: text.to_owned(),
        };
        let mut out = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Self(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_bad_text_is_refused() {
        let mac: MacAddr = "02:00:5e:10:00:0a".parse().expect("valid MAC");
        assert_eq!(mac.octets(), [0x02, 0x00, 0x5e, 0x10, 0x00, 0x0a]);
        assert_eq!(mac.to_string(), "02:00:5e:10:00:0a");
        for bad in [
            "",
            "02:00:5e:10:00",
            "02:00:5e:10:00:0a:0b",
            "2:00:5e:10:00:0a",
            "zz:00:5e:10:00:0a",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad:?} accepted");
        }
        assert!(mac.is_unicast());
        assert!(!MacAddr([0x01, 0, 0x5e, 0, 0, 1]).is_unicast());
        assert!(!MacAddr([0; 6]).is_unicast());
    }
}
