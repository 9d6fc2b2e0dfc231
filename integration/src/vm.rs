//! VM test helpers: the test guest `cargo xtask guest` builds, the addresses a guest and
//! its tap use, and routing the guest's subnets between a World's namespaces (the bottle
//! netns, which holds the tap, acts as the guest's router).

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::addr::{BOTTLE_V4, BOTTLE_V6};
use crate::cork::workspace_root;
use crate::world::World;

/// The tap's IPv4 address and prefix (the guest's gateway).
pub const TAP_V4: &str = "198.51.100.129/26";
/// The guest's IPv4 address and prefix.
pub const GUEST_V4: &str = "198.51.100.130/26";
/// The guest subnet.
pub const GUEST_NET4: &str = "198.51.100.128/26";
/// The tap's IPv6 address and prefix (the guest's gateway).
pub const TAP_V6: &str = "2001:db8:100::1/64";
/// The guest's IPv6 address and prefix.
pub const GUEST_V6: &str = "2001:db8:100::2/64";
/// The guest subnet (IPv6).
pub const GUEST_NET6: &str = "2001:db8:100::/64";

/// The test guest: Debian's cloud kernel and cork's busybox initramfs.
#[derive(Debug, Clone)]
pub struct Guest {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

impl Guest {
    /// `$CORK_GUEST_DIR`, else `<workspace>/target/guest`; missing is an error (a
    /// privileged test that cannot run fails).
    pub fn locate() -> Result<Self> {
        let dir = std::env::var_os("CORK_GUEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target/guest"));
        let g = Self {
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd.cpio"),
        };
        if !g.kernel.is_file() || !g.initrd.is_file() {
            bail!(
                "test guest not found in {} (vmlinuz, initrd.cpio): build it with `cargo xtask guest`",
                dir.display()
            );
        }
        Ok(g)
    }
}

/// The kernel command line keys of the test guest's init for a static configuration
/// with the addresses above.
pub fn static_net_append() -> String {
    let gw4 = TAP_V4.split('/').next().unwrap_or_default();
    let gw6 = TAP_V6.split('/').next().unwrap_or_default();
    format!("cork.ip4={GUEST_V4} cork.gw4={gw4} cork.ip6={GUEST_V6} cork.gw6={gw6}")
}

/// Makes the bottle netns forward between the tap and the veth, and routes the guest
/// subnets back to it from the internet netns. Only the World's own namespaces change.
pub fn route_guest_subnets(world: &World) -> Result<()> {
    world.bottle().sysctl("net.ipv4.ip_forward", "1")?;
    world.bottle().sysctl("net.ipv6.conf.all.forwarding", "1")?;
    world
        .internet()
        .ip(&["route", "add", GUEST_NET4, "via", &BOTTLE_V4.to_string()])?;
    world.internet().ip(&[
        "-6",
        "route",
        "add",
        GUEST_NET6,
        "via",
        &BOTTLE_V6.to_string(),
    ])?;
    Ok(())
}

/// The pools `cork vm` takes its guest addresses from in tests (inside the test ranges,
/// above the World's uplink /25).
pub const POOL4: &str = "198.51.100.128/26";
pub const POOL6: &str = "2001:db8:100::/56";

/// Narrows the bottle netns's uplink from 198.51.100.0/24 to /25, so that the host
/// (`cork vm` runs in the bottle netns) has no route overlapping [`POOL4`] — cork refuses
/// a pool the host already routes. Servers in the internet netns then use .2 to .127.
pub fn make_room_for_pools(world: &World) -> Result<()> {
    let b = world.bottle();
    let veth = format!("{}v", world.id());
    b.ip(&["addr", "del", &format!("{BOTTLE_V4}/24"), "dev", &veth])?;
    b.ip(&["addr", "add", &format!("{BOTTLE_V4}/25"), "dev", &veth])?;
    Ok(())
}

/// `cork vm` for the test guest, in the bottle netns: TCG, the test pools, the audit log
/// of `label`, the probe script as fw_cfg `opt/cork/probe`, `append` after `quiet`.
pub fn cork_vm(
    world: &World,
    guest: &Guest,
    manifest: &std::path::Path,
    label: &str,
    probe: &std::path::Path,
    append: &str,
) -> std::process::Command {
    let mut cmd = world.cork(["vm", "--accel", "tcg", "--memory", "256"]);
    cmd.args(["--pool4", POOL4, "--pool6", POOL6])
        .arg("--manifest")
        .arg(manifest)
        .arg("--audit-log")
        .arg(world.audit_path_for(label))
        .arg("--kernel")
        .arg(&guest.kernel)
        .arg("--initrd")
        .arg(&guest.initrd)
        .arg("--fw-cfg")
        .arg(format!("opt/cork/probe={}", probe.display()))
        .args(["--append", &format!("quiet panic=-1 {append}")]);
    cmd
}
