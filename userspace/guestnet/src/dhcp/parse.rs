//! [`parse`]: bytes of a UDP payload to a [`DhcpMessage`], or a [`DhcpError`] naming the
//! field and offset that is wrong. Never panics: every read is bounds-checked, and a
//! message must end with the End option, so every truncation of one is an error.

use std::net::Ipv4Addr;

use super::{BootOp, DhcpError, DhcpMessage, MAGIC_COOKIE, MessageType, OPTIONS_OFFSET, opt};
use crate::mac::MacAddr;

/// Parses one DHCP message (a BOOTP request or reply carrying option 53).
pub fn parse(bytes: &[u8]) -> Result<DhcpMessage, DhcpError> {
    if bytes.len() < OPTIONS_OFFSET {
        return Err(DhcpError::Truncated {
            field: "BOOTP header and magic cookie",
            offset: 0,
            need: OPTIONS_OFFSET,
            len: bytes.len(),
        });
    }
    let (header, options) = bytes.split_at(OPTIONS_OFFSET);
    let op = match header[0] {
        1 => BootOp::Request,
        2 => BootOp::Reply,
        op => return Err(DhcpError::BadOp { op }),
    };
    let (htype, hlen) = (header[1], header[2]);
    if (htype, hlen) != (1, 6) {
        return Err(DhcpError::NotEthernet { htype, hlen });
    }
    let cookie = array::<4>(header, 236);
    if cookie != MAGIC_COOKIE {
        return Err(DhcpError::BadCookie { found: cookie });
    }
    let options = parse_options(options)?;
    let kind_byte = options
        .iter()
        .find(|(c, _)| *c == opt::MESSAGE_TYPE)
        .and_then(|(_, d)| d.first().copied())
        .ok_or(DhcpError::MissingMessageType)?;
    let kind = MessageType::from_u8(kind_byte)
        .ok_or(DhcpError::UnknownMessageType { value: kind_byte })?;
    Ok(DhcpMessage {
        op,
        kind,
        xid: u32::from_be_bytes(array(header, 4)),
        secs: u16::from_be_bytes(array(header, 8)),
        flags: u16::from_be_bytes(array(header, 10)),
        ciaddr: Ipv4Addr::from(array::<4>(header, 12)),
        yiaddr: Ipv4Addr::from(array::<4>(header, 16)),
        siaddr: Ipv4Addr::from(array::<4>(header, 20)),
        giaddr: Ipv4Addr::from(array::<4>(header, 24)),
        chaddr: MacAddr(array(header, 28)),
        options,
    })
}

/// `N` bytes at `at` of the fixed header (always in bounds: the header is 240 bytes).
fn array<const N: usize>(header: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = header.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

/// Walks the options field up to End; pads are skipped, repeated codes concatenated.
fn parse_options(field: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, DhcpError> {
    let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut i = 0;
    loop {
        let offset = OPTIONS_OFFSET + i;
        let Some(&code) = field.get(i) else {
            return Err(DhcpError::MissingEnd);
        };
        match code {
            opt::END => break,
            opt::PAD => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let Some(&len) = field.get(i + 1) else {
            return Err(DhcpError::Truncated {
                field: "option length",
                offset: offset + 1,
                need: 1,
                len: OPTIONS_OFFSET + field.len(),
            });
        };
        let len = usize::from(len);
        let data = field
            .get(i + 2..i + 2 + len)
            .ok_or(DhcpError::OptionOverrun {
                code,
                offset,
                len,
                left: field.len().saturating_sub(i + 2),
            })?;
        match out.iter_mut().find(|(c, _)| *c == code) {
            Some((_, existing)) => existing.extend_from_slice(data),
            None => out.push((code, data.to_vec())),
        }
        i += 2 + len;
    }
    for (code, data) in &out {
        check_length(*code, data.len())?;
    }
    Ok(out)
}

/// Length rules for the options this crate reads, checked once on the (concatenated) data
/// so that the typed accessors cannot meet a malformed value.
fn check_length(code: u8, len: usize) -> Result<(), DhcpError> {
    let (name, ok, expected) = match code {
        opt::MESSAGE_TYPE => ("message type", len == 1, "1"),
        opt::SUBNET_MASK => ("subnet mask", len == 4, "4"),
        opt::REQUESTED_IP => ("requested address", len == 4, "4"),
        opt::SERVER_ID => ("server identifier", len == 4, "4"),
        opt::LEASE_TIME => ("lease time", len == 4, "4"),
        opt::RENEWAL_T1 => ("renewal time", len == 4, "4"),
        opt::REBINDING_T2 => ("rebinding time", len == 4, "4"),
        opt::MTU => ("interface MTU", len == 2, "2"),
        opt::MAX_SIZE => ("maximum message size", len == 2, "2"),
        opt::ROUTER => (
            "router",
            len >= 4 && len.is_multiple_of(4),
            "a multiple of 4",
        ),
        opt::DNS => (
            "DNS server",
            len >= 4 && len.is_multiple_of(4),
            "a multiple of 4",
        ),
        opt::CLIENT_ID => ("client identifier", len >= 2, "at least 2"),
        opt::PARAM_REQUEST => ("parameter request list", len >= 1, "at least 1"),
        _ => return Ok(()),
    };
    if ok {
        Ok(())
    } else {
        Err(DhcpError::OptionLength {
            code,
            name,
            len,
            expected,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A DISCOVER as busybox udhcpc sends it: client id, parameter request list, End.
    pub(crate) fn discover(mac: [u8; 6]) -> Vec<u8> {
        let mut b = vec![0u8; OPTIONS_OFFSET];
        b[..4].copy_from_slice(&[1, 1, 6, 0]);
        b[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        b[28..34].copy_from_slice(&mac);
        b[236..240].copy_from_slice(&MAGIC_COOKIE);
        b.extend_from_slice(&[53, 1, 1, 61, 7, 1]);
        b.extend_from_slice(&mac);
        b.extend_from_slice(&[55, 4, 1, 3, 6, 26, 255]);
        b
    }

    #[test]
    fn a_discover_parses_with_its_options() {
        let m = parse(&discover([2, 0, 0, 0, 0, 10])).expect("valid discover");
        assert_eq!(
            (m.op, m.kind, m.xid),
            (BootOp::Request, MessageType::Discover, 0x1234_5678)
        );
        assert_eq!(m.chaddr, MacAddr([2, 0, 0, 0, 0, 10]));
        assert_eq!(m.client_id(), Some(&[1, 2, 0, 0, 0, 0, 10][..]));
        assert_eq!(m.param_request_list(), [1, 3, 6, 26]);
        assert_eq!(m.requested_ip(), None);
    }

    #[test]
    fn bad_input_is_named() {
        let good = discover([2, 0, 0, 0, 0, 10]);
        let mut cases: Vec<(Vec<u8>, &str)> = Vec::new();
        let mut b = good.clone();
        b[0] = 3;
        cases.push((b, "BOOTP op 3"));
        let mut b = good.clone();
        b[2] = 16;
        cases.push((b, "not Ethernet"));
        let mut b = good.clone();
        b[236] = 0;
        cases.push((b, "magic cookie"));
        let mut b = good.clone();
        b[OPTIONS_OFFSET + 2] = 9;
        cases.push((b, "message type 9"));
        let mut b = good.clone();
        b[OPTIONS_OFFSET + 1] = 2;
        b.insert(OPTIONS_OFFSET + 2, 1);
        cases.push((b, "option 53 (message type) has length 2"));
        let mut b = good[..OPTIONS_OFFSET].to_vec();
        b.extend_from_slice(&[61, 2, 1, 9, 255]);
        cases.push((b, "no DHCP message type"));
        let mut b = good[..OPTIONS_OFFSET].to_vec();
        b.extend_from_slice(&[53, 1, 1, 50, 4, 1, 2]);
        cases.push((b, "option 50 at offset 243 claims 4 bytes, only 2 remain"));
        cases.push((good[..good.len() - 1].to_vec(), "without the End option"));
        cases.push((good[..100].to_vec(), "truncated in BOOTP header"));
        for (bytes, needle) in cases {
            let err = parse(&bytes).expect_err("bad input accepted");
            assert!(err.to_string().contains(needle), "{err} lacks {needle:?}");
        }
    }

    #[test]
    fn overload_is_ignored_and_repeated_options_concatenate() {
        let mut b = discover([2, 0, 0, 0, 0, 10]);
        b.pop();
        b.extend_from_slice(&[52, 1, 3, 55, 1, 51, 0, 0, 255, 0, 0]);
        let m = parse(&b).expect("overload and pads are fine");
        assert_eq!(m.param_request_list(), [1, 3, 6, 26, 51]);
        assert_eq!(m.option(opt::OVERLOAD), Some(&[3][..]));
    }
}
