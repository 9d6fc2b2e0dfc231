//! The guest network parsers never panic on what a guest can send: DHCP messages (and the
//! server's answer to them) and router solicitations. Router advertisements that parse
//! survive a build/parse round trip unchanged.
#![no_main]

use std::net::Ipv4Addr;
use std::time::Duration;

use cork_guestnet::dhcp::{self, Answer};
use cork_guestnet::ndp::{
    build_router_advertisement, parse_router_advertisement, parse_router_solicitation,
};
use cork_guestnet::{GuestNetConfig, MacAddr};
use libfuzzer_sys::fuzz_target;

fn config() -> GuestNetConfig {
    GuestNetConfig {
        guest_mac: MacAddr([2, 0, 0, 0, 1, 0x30]),
        guest_v4: Ipv4Addr::new(198, 51, 100, 130),
        prefix_len_v4: 26,
        gateway_v4: Ipv4Addr::new(198, 51, 100, 129),
        dns_v4: vec![Ipv4Addr::new(198, 51, 100, 129)],
        dns_v6: vec!["2001:db8:100:1::1".parse().expect("literal")],
        prefix_v6: "2001:db8:100:1::".parse().expect("literal"),
        mtu: 1400,
        lease_secs: 3600,
        ra_interval: Duration::from_secs(15),
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = dhcp::parse(data)
        && let Answer::Reply { packet, .. } = dhcp::answer(&config(), &msg)
    {
        assert!(dhcp::parse(&packet).is_ok(), "the server's own reply must parse");
    }
    let _ = parse_router_solicitation(data);
    if let Ok(ra) = parse_router_advertisement(data) {
        let again = parse_router_advertisement(&build_router_advertisement(&ra));
        assert_eq!(again.as_ref(), Ok(&ra));
    }
});
