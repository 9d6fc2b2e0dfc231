//! Shared by the tests that run cork's packet programs on synthetic packets
//! (`BPF_PROG_TEST_RUN`, attached nowhere): a deterministic case generator and a guard
//! that removes the programs' pin directory whatever happens to the test.

use std::path::PathBuf;

use anyhow::Result;

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
