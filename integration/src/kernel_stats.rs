//! What a bottle's kernel programs cost, from the kernel's own accounting: while a
//! `BPF_ENABLE_STATS` fd is open the kernel sums `run_time_ns` and counts `run_cnt` for
//! every program run. [`BottlePrograms`] finds the programs attached to a bottle's cgroup
//! and holds an fd to each, so their counters can still be read after the bottle ended.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use aya::programs::{ProgramFd, loaded_programs};
use cork_bpf::{AttachType, attached_programs};

/// The cgroup hooks a process bottle attaches to.
const CGROUP_HOOKS: &[AttachType] = &[
    AttachType::SockCreate,
    AttachType::PostBind4,
    AttachType::PostBind6,
    AttachType::Connect4,
    AttachType::Connect6,
    AttachType::Sendmsg4,
    AttachType::Sendmsg6,
    AttachType::Recvmsg4,
    AttachType::Recvmsg6,
    AttachType::GetPeerName4,
    AttachType::GetPeerName6,
    AttachType::SockOps,
    AttachType::SkbEgress,
];

/// Run-time accounting is on while this lives (the kernel turns it off with the last fd).
pub struct StatsOn(#[allow(dead_code)] OwnedFd);

/// Turns on the kernel's per-program run-time accounting.
pub fn enable() -> Result<StatsOn> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map(StatsOn)
        .context("BPF_ENABLE_STATS (needs root, kernel 5.8+)")
}

/// One program's counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgStat {
    pub id: u32,
    pub name: String,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

impl ProgStat {
    /// Mean nanoseconds per run (0 when it never ran).
    pub fn ns_per_run(&self) -> f64 {
        if self.run_cnt == 0 {
            0.0
        } else {
            self.run_time_ns as f64 / self.run_cnt as f64
        }
    }
}

/// The programs attached to one bottle's cgroup, each held open by an fd.
pub struct BottlePrograms {
    ids: BTreeSet<u32>,
    _fds: Vec<ProgramFd>,
}

impl BottlePrograms {
    /// The programs on the cgroup of a process whose `/proc/<pid>/cgroup` line (`0::/path`)
    /// is `line`, or on its nearest ancestor that has any.
    pub fn of_cgroup_line(line: &str) -> Result<Self> {
        let rel = line
            .trim()
            .strip_prefix("0::")
            .with_context(|| format!("not a cgroup2 line: {line:?}"))?;
        let mount = crate::host::cgroup2_mount()?;
        let mut dir = mount.join(rel.trim_start_matches('/'));
        loop {
            let found = Self::attached_to(&dir)?;
            if !found.ids.is_empty() {
                return Ok(found);
            }
            if dir == mount || !dir.pop() {
                bail!("no programs on {rel} or any cgroup above it");
            }
        }
    }

    /// The programs attached to the cgroup at `dir` itself.
    pub fn attached_to(dir: &Path) -> Result<Self> {
        let cgroup = File::open(dir).with_context(|| format!("open cgroup {}", dir.display()))?;
        let mut ids = BTreeSet::new();
        for &hook in CGROUP_HOOKS {
            let found = attached_programs(&cgroup, hook)
                .with_context(|| format!("BPF_PROG_QUERY {hook:?} on {}", dir.display()))?;
            ids.extend(found);
        }
        let mut fds = Vec::new();
        for info in loaded_programs() {
            let info = info.context("listing loaded programs")?;
            if ids.contains(&info.id()) {
                fds.push(info.fd().context("BPF_PROG_GET_FD_BY_ID")?);
            }
        }
        Ok(Self { ids, _fds: fds })
    }

    /// Counters of every held program, sorted by name.
    pub fn snapshot(&self) -> Result<Vec<ProgStat>> {
        let mut out = Vec::new();
        for info in loaded_programs() {
            let info = info.context("listing loaded programs")?;
            if self.ids.contains(&info.id()) {
                out.push(ProgStat {
                    id: info.id(),
                    name: info.name_as_str().unwrap_or("?").to_owned(),
                    run_time_ns: info.run_time().as_nanos() as u64,
                    run_cnt: info.run_count(),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// `after - before` for each program of `after`.
pub fn delta(before: &[ProgStat], after: &[ProgStat]) -> Vec<ProgStat> {
    after
        .iter()
        .map(|a| {
            let b = before.iter().find(|b| b.id == a.id);
            ProgStat {
                run_time_ns: a.run_time_ns - b.map_or(0, |b| b.run_time_ns),
                run_cnt: a.run_cnt - b.map_or(0, |b| b.run_cnt),
                ..a.clone()
            }
        })
        .collect()
}

/// The memory the kernel charges for a map (`memlock:` in its fdinfo), by map pin path.
pub fn map_memlock(pin: &Path) -> Result<u64> {
    let info = aya::maps::MapInfo::from_pin(pin)
        .with_context(|| format!("BPF_OBJ_GET {}", pin.display()))?;
    let fd = info.fd().context("BPF_MAP_GET_FD_BY_ID")?;
    let fd_path = PathBuf::from(format!(
        "/proc/self/fdinfo/{}",
        std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(&fd))
    ));
    let text =
        std::fs::read_to_string(&fd_path).with_context(|| format!("read {}", fd_path.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("memlock:")?.trim().parse().ok())
        .with_context(|| format!("no memlock in {}", fd_path.display()))
}
