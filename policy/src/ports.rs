//! Port ranges and protocols: how the manifest spells them (`443`, `"8000-8100"`, `"tcp"`)
//! and the checks that keep nonsense out of the kernel slots.

use std::fmt;

/// An inclusive port range, `lo <= hi` always.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    lo: u16,
    hi: u16,
}

/// Why a manifest port value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("port {value} is out of range 1-65535")]
    OutOfRange { value: String },
    #[error("range \"{lo}-{hi}\" is reversed; write \"{hi}-{lo}\"")]
    Reversed { lo: u16, hi: u16 },
    #[error("{text:?} is not a port or a \"lo-hi\" port range")]
    Malformed { text: String },
}

impl PortRange {
    /// Every port, 0 included: what a rule without `ports` matches. (Port 0 never appears
    /// as a real destination, and a single slot is cheaper than two.)
    pub const ALL: PortRange = PortRange {
        lo: 0,
        hi: u16::MAX,
    };

    /// A range from `lo` to `hi` inclusive, or `None` when `lo > hi`.
    pub fn new(lo: u16, hi: u16) -> Option<Self> {
        (lo <= hi).then_some(Self { lo, hi })
    }

    pub fn lo(&self) -> u16 {
        self.lo
    }

    pub fn hi(&self) -> u16 {
        self.hi
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }

    /// A manifest port number: 1-65535 (0 is not a destination anyone can reach).
    pub(crate) fn from_number(value: i64) -> Result<Self, PortError> {
        let port = user_port(value)?;
        Ok(Self { lo: port, hi: port })
    }

    /// A manifest port string: `"lo-hi"`, or a single `"443"`.
    pub(crate) fn from_text(text: &str) -> Result<Self, PortError> {
        let malformed = || PortError::Malformed {
            text: text.to_owned(),
        };
        let number = |s: &str| -> Result<u16, PortError> {
            // Digits only: no signs, spaces or empty sides (`"-5"`, `"1 - 2"`, `"3-"`).
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(malformed());
            }
            s.parse()
                .ok()
                .and_then(|n: u32| u16::try_from(n).ok())
                .filter(|&n| n != 0)
                .ok_or(PortError::OutOfRange {
                    value: s.to_owned(),
                })
        };
        let (lo, hi) = match text.split_once('-') {
            Some((lo, hi)) => (number(lo)?, number(hi)?),
            None => {
                let port = number(text)?;
                (port, port)
            }
        };
        Self::new(lo, hi).ok_or(PortError::Reversed { lo, hi })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

pub(crate) fn user_port(value: i64) -> Result<u16, PortError> {
    match u16::try_from(value) {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(PortError::OutOfRange {
            value: value.to_string(),
        }),
    }
}

/// Transport protocol of a rule. `Any` matches TCP and UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Any,
}

impl Proto {
    /// The IANA protocol number, 0 for `Any` (the values of `enum cork_proto_sel`).
    pub fn ip_proto(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Any => 0,
        }
    }

    /// Whether a rule with this protocol matches traffic of protocol `packet`.
    pub fn matches(self, packet: Proto) -> bool {
        self == Proto::Any || self == packet
    }

    pub(crate) fn from_manifest(text: &str) -> Option<Self> {
        match text {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            "any" => Some(Proto::Any),
            _ => None,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Any => "any",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Result<String, String> {
        PortRange::from_text(s)
            .map(|r| r.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn parses_numbers_and_ranges() {
        assert_eq!(PortRange::from_number(443).unwrap().to_string(), "443");
        assert_eq!(text("8000-8100").unwrap(), "8000-8100");
        assert_eq!(text("53").unwrap(), "53");
        assert_eq!(text("7-7").unwrap(), "7");
        assert_eq!(text("1-65535").unwrap(), "1-65535");
    }

    #[test]
    fn rejects_bad_ports() {
        assert_eq!(
            PortRange::from_number(0).unwrap_err().to_string(),
            "port 0 is out of range 1-65535"
        );
        assert_eq!(
            PortRange::from_number(65536).unwrap_err().to_string(),
            "port 65536 is out of range 1-65535"
        );
        assert_eq!(
            text("9-3").unwrap_err(),
            r#"range "9-3" is reversed; write "3-9""#
        );
        assert_eq!(text("0-5").unwrap_err(), "port 0 is out of range 1-65535");
        assert_eq!(
            text("99999999999999999999").unwrap_err(),
            "port 99999999999999999999 is out of range 1-65535"
        );
        for bad in ["", "-", "1-", "-5", "1-2-3", "1 - 2", "+1", "https", "1..2"] {
            assert!(text(bad).unwrap_err().contains("is not a port"), "{bad:?}");
        }
    }

    #[test]
    fn any_matches_both_protocols() {
        assert!(Proto::Any.matches(Proto::Tcp) && Proto::Any.matches(Proto::Udp));
        assert!(Proto::Tcp.matches(Proto::Tcp) && !Proto::Tcp.matches(Proto::Udp));
    }
}
