//! Runs after every other integration test (xtask orders it last): nothing cork or the
//! test worlds create may remain — no `ck*` netns, no `cork-*` cgroups, bpffs pins or CA
//! bundle directories, no cork QEMU and no `ck*` interface (a tap) in the host namespace,
//! no live world locks, and no leftovers that a test binary's guard had to sweep away.
//!
//! nftables: the nft tests create cork's table only inside their worlds' namespaces;
//! in the host namespace (where `cork vm` will create it) table `inet cork` must be gone
//! with the last VM bottle.

use std::path::Path;

use anyhow::Result;
use cork_integration::{host, netns, sweep};

#[test]
fn no_network_namespaces_remain() {
    let left: Vec<String> = netns::list()
        .into_iter()
        .filter(|n| n.starts_with("ck"))
        .collect();
    assert!(left.is_empty(), "netns left behind: {left:?}");
}

#[test]
fn no_cork_nft_table_remains() -> Result<()> {
    // A read-only netlink dump of the host namespace's tables.
    assert!(
        !cork_nft::table_exists()?,
        "table inet cork left behind in the host network namespace"
    );
    Ok(())
}

#[test]
fn no_cgroups_remain() -> Result<()> {
    let left = host::entries_with_prefix(&host::cgroup2_mount()?, "cork-");
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
    Ok(())
}

#[test]
fn no_bpf_pins_remain() {
    let left = host::entries_with_prefix(Path::new(host::BPFFS), "cork-");
    assert!(left.is_empty(), "pins left behind: {left:?}");
}

/// The shared program set (`cork_programs`) outlives bottles by design; no bottle may stay
/// registered in it (a cork_cfg entry or an outer map slot would keep a dead bottle's
/// maps alive).
#[test]
fn no_bottle_stays_in_the_shared_programs() {
    let left = cork_bpf::shared::registrations(Path::new(host::BPFFS));
    assert!(left.is_empty(), "registrations left behind: {left:?}");
}

/// ...and the last world to go removed the set itself: nothing of cork's stays in bpffs
/// for the next suite or session.
#[test]
fn no_shared_program_set_remains() {
    let root = Path::new(host::BPFFS).join(cork_bpf::shared::DIR);
    let left: Vec<_> = std::fs::read_dir(&root)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(!root.exists(), "{} left behind: {left:?}", root.display());
}

#[test]
fn no_ca_bundles_remain() {
    let left = host::entries_with_prefix(Path::new("/run/cork"), "cork-");
    assert!(
        left.is_empty(),
        "CA bundle directories left behind: {left:?}"
    );
}

#[test]
fn no_qemu_processes_remain() {
    let left = host::cork_qemu_processes();
    assert!(left.is_empty(), "QEMU processes left behind: {left:?}");
}

#[test]
fn no_taps_remain_in_the_host_namespace() {
    // Taps live in World namespaces and die with their fd; one named like cork's in the
    // host namespace means something was created in the wrong place or leaked.
    let left = host::entries_with_prefix(Path::new("/sys/class/net"), "ck");
    assert!(left.is_empty(), "interfaces left behind: {left:?}");
}

#[test]
fn no_world_is_alive_or_was_swept() {
    let locks: Vec<_> = host::entries_with_prefix(Path::new(sweep::LOCK_DIR), "ck");
    assert!(
        locks.is_empty(),
        "world locks left (a World was leaked or is still alive): {locks:?}"
    );
    let dirs = host::entries_with_prefix(Path::new(sweep::TMP_DIR), "ck");
    assert!(dirs.is_empty(), "world temp dirs left behind: {dirs:?}");
    let swept = std::fs::read_to_string(sweep::SWEPT_LOG).unwrap_or_default();
    assert!(
        swept.trim().is_empty(),
        "a test binary swept leftovers of dead worlds (a World was not torn down); \
         run `cargo run -p cork-integration --bin cork-sweep` to reset:\n{swept}"
    );
}
