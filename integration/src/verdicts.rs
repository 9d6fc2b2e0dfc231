//! Shared by the tests that run cork's packet programs on synthetic packets
//! (`BPF_PROG_TEST_RUN`, attached nowhere): a deterministic case generator and a guard
//! that removes the programs' pin directory whatever happens to the test.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use anyhow::Result;
use cork_policy::{KernelPlan, LearnedEntry, Policy, PrefixEntry};

/// A small deterministic generator: the same cases every run.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next_u64() as usize) % items.len()]
    }
}

/// A cgroup bottle's settings for programs run without attaching: bottle `bottle_id`, no
/// DNS or proxy redirect (nothing listens for them).
pub const fn cgroup_consts(bottle_id: u32) -> cork_bpf::LoadConstants {
    cork_bpf::LoadConstants {
        bottle_id,
        dns_port: 0,
        proxy_port: 0,
        guest: None,
    }
}

/// Loaded programs (`run`) and their pin directory, removed on drop even when an
/// assertion fails. Pins go under a name `cork clean` leaves alone (`cork-<kind>-<pid>-<tag>`
/// is not a bottle key), since other tests run it meanwhile.
pub struct PinnedRun<T> {
    pub run: Option<T>,
    pub pin_dir: PathBuf,
}

impl<T> PinnedRun<T> {
    /// An empty guard for `<bpffs>/cork-<kind>-<pid>-<tag>`.
    pub fn new(kind: &str, tag: &str) -> Result<Self> {
        let pin_dir = cork_agent::mounts::ensure_bpffs()?
            .join(format!("cork-{kind}-{}-{tag}", std::process::id()));
        Ok(PinnedRun { run: None, pin_dir })
    }
}

impl<T> Drop for PinnedRun<T> {
    fn drop(&mut self) {
        drop(self.run.take());
        let _ = std::fs::remove_dir_all(&self.pin_dir);
    }
}

/// Domain rules that send traffic through the inspecting proxy in each way a rule can
/// (80/443 by default, every port with `inspect = true`, pass-through by SNI), over static
/// prefix rules: what learned names are tested with, for every packet program.
pub const PROXY_MANIFEST: &str = r#"
version = 1
[bottle]
name = "verdicts-proxy"

[[egress.allow]]
domain = "web.example.test"          # default: 80 and 443 go through the proxy
proto = "any"

[[egress.allow]]
domain = "all.example.test"          # every port of the rule through the proxy
ports = [8443, "9000-9001"]
inspect = true

[[egress.allow]]
domain = "pinned.example.test"       # pass-through by SNI: still redirected on 443
ports = [443, 22]
inspect = false

[[egress.allow]]
cidr = "198.51.100.0/25"
ports = [443, 9000]
proto = "any"

[[egress.deny]]
cidr = "198.51.100.66/32"
ports = [443]
"#;

/// The names of [`PROXY_MANIFEST`], each with the host (198.51.100.x) it is learned at.
pub const PROXY_NAMES: [(&str, u8); 3] = [
    ("web.example.test", 10),
    ("all.example.test", 66),
    ("pinned.example.test", 200),
];

/// Learns each of `names` (at 198.51.100.<host>) through `learn` — the kernel's map — and
/// returns `plan` with the same entries, the model the program is checked against.
pub fn learn_names(
    policy: &Policy,
    plan: &KernelPlan,
    names: &[(&str, u8)],
    mut learn: impl FnMut(&LearnedEntry) -> Result<()>,
) -> Result<KernelPlan> {
    let mut model = plan.clone();
    for &(name, host) in names {
        let dst = IpAddr::V4(Ipv4Addr::new(198, 51, 100, host));
        let e = plan.learned_entry(dst, &policy.allowed_slots(name))?;
        learn(&e)?;
        model.v4.retain(|p| p.prefix != e.prefix);
        model.v4.push(PrefixEntry {
            prefix: e.prefix,
            slots: e.slots,
        });
    }
    Ok(model)
}
