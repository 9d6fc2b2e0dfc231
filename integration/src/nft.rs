//! Helpers for the tests of cork-nft (`tests/nft.rs`, `tests/nft_batches.rs`): the
//! [`VmRules`] of a [`Guest`], running cork-nft in the bottle netns where the table
//! lives, the `nft` CLI there, and the proxy side of a DNATed connection.

use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;

use anyhow::{Result, bail};
use cork_nft::{BottlePlan, Marks, NftError, VmRules};

use crate::guest::{GATEWAY_V4, GATEWAY_V6, GUEST_MAC, GUEST_V4, GUEST_V6, Guest};
use crate::world::{Side, World};

/// The rules of a bottle `id` whose guest is `guest`: the guest's MAC and addresses
/// (its IPv6 /64), DNS proxy on 5353, inspecting proxy on 15001, host port 7000.
pub fn vm_rules(guest: &Guest, id: u32) -> VmRules {
    VmRules {
        id,
        ifname: guest.tap().to_owned(),
        guest_mac: GUEST_MAC,
        guest_v4: GUEST_V4,
        gateway_v4: GATEWAY_V4,
        guest_v6: GUEST_V6,
        guest_v6_prefix: 64,
        gateway_v6: GATEWAY_V6,
        gateway_v6_ll: None,
        dns_port: 5353,
        proxy_port: 15001,
        host_ports: vec![7000],
        marks: Marks::CORK,
    }
}

/// Runs a cork-nft call in the bottle netns (where cork's table lives).
pub fn in_host<T: Send + 'static>(
    world: &World,
    f: impl FnOnce() -> Result<T, NftError> + Send + 'static,
) -> Result<T> {
    world.bottle().run(move || f().map_err(anyhow::Error::from))
}

/// `cork_nft::apply` in the bottle netns.
pub fn apply(world: &World, rules: &VmRules) -> Result<BottlePlan> {
    let rules = rules.clone();
    in_host(world, move || cork_nft::apply(&rules))
}

/// `nft ARGS...` in the bottle netns; its stdout.
pub fn nft(world: &World, args: &[&str]) -> Result<String> {
    let mut cmd: Command = world.command(Side::Bottle, "nft");
    cmd.args(args);
    let out = world.run(cmd)?;
    if out.code() != 0 {
        bail!("nft {args:?} exited {}:\n{out}", out.code());
    }
    Ok(out.stdout)
}

/// SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST of an accepted, DNATed connection.
pub fn original_dst(conn: &TcpStream) -> std::io::Result<SocketAddr> {
    let fd = conn.as_raw_fd();
    let mut buf = [0u8; 28];
    let mut len = buf.len() as libc::socklen_t;
    let (level, name) = match conn.local_addr()? {
        SocketAddr::V4(_) => (libc::SOL_IP, libc::SO_ORIGINAL_DST),
        SocketAddr::V6(_) => (libc::SOL_IPV6, libc::IP6T_SO_ORIGINAL_DST),
    };
    // SAFETY: `buf` is writable for `len` bytes, enough for a sockaddr_in6.
    let rc = unsafe { libc::getsockopt(fd, level, name, buf.as_mut_ptr().cast(), &mut len) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let port = u16::from_be_bytes([buf[2], buf[3]]);
    Ok(match level {
        libc::SOL_IP => SocketAddr::new(
            std::net::Ipv4Addr::new(buf[4], buf[5], buf[6], buf[7]).into(),
            port,
        ),
        _ => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&buf[8..24]);
            SocketAddr::new(std::net::Ipv6Addr::from(a).into(), port)
        }
    })
}
