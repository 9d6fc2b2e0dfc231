//! One named network namespace (`/run/netns/<name>`), created with iproute2 from the host
//! mount namespace, and the ways to act inside it without leaving the host's mount
//! namespace: threads that `setns` only themselves, and children that `setns` in
//! `pre_exec` (`ip netns exec` would remount /sys and hide cgroup2 and bpffs from cork).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::thread::JoinHandle;

use anyhow::{Context, Result, bail};
use nix::sched::{CloneFlags, setns};

use crate::process;

/// A network namespace this process created; [`Netns::delete`] removes it.
#[derive(Debug)]
pub struct Netns {
    name: String,
    file: File,
    inode: u64,
}

impl Netns {
    /// `ip netns add <name>`, then opens it.
    pub fn create(name: &str) -> Result<Self> {
        process::ip(&["netns", "add", name])?;
        Self::open(name).inspect_err(|_| {
            let _ = process::ip(&["netns", "del", name]);
        })
    }

    /// Opens an existing named namespace.
    pub fn open(name: &str) -> Result<Self> {
        let path = format!("/run/netns/{name}");
        let file = File::open(&path).with_context(|| format!("open {path}"))?;
        let inode = file
            .metadata()
            .with_context(|| format!("stat {path}"))?
            .ino();
        Ok(Self {
            name: name.to_owned(),
            file,
            inode,
        })
    }

    /// The namespace's name under /run/netns.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The nsfs inode, as in `/proc/PID/ns/net` -> `net:[inode]`.
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// `ip -n <name> ARGS...`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        process::ip(&all)
    }

    /// A command whose child enters this namespace before exec, staying in the host's
    /// mount namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        // The closure owns its own duplicate, so the fd lives exactly as long as the
        // Command, whatever happens to `self`.
        let fd: OwnedFd = self
            .file
            .try_clone()
            .expect("dup netns fd (out of file descriptors?)")
            .into();
        // SAFETY: between fork and exec the closure only calls setns(2), which is
        // async-signal-safe and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    /// The whitespace-separated fields of `ss ARGS` run in this namespace (the socket
    /// statistics the kernel keeps, for tests that wait on what a socket did).
    pub fn ss_fields(&self, args: &[&str]) -> Result<Vec<String>> {
        let out = self
            .command("ss")
            .args(args)
            .output()
            .context("running ss")?;
        if !out.status.success() {
            bail!("ss {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect())
    }

    /// Runs `f` on a new thread that has entered this namespace (only that thread does).
    pub fn spawn<T, F>(&self, thread_name: &str, f: F) -> Result<JoinHandle<Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let file = self.file.try_clone().context("dup netns fd")?;
        let name = self.name.clone();
        std::thread::Builder::new()
            .name(thread_name.to_owned())
            .spawn(move || {
                setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("setns into {name}"))?;
                drop(file);
                f()
            })
            .context("spawn thread")
    }

    /// Runs `f` inside this namespace on a helper thread and waits for it.
    pub fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        match self.spawn("netns-run", f)?.join() {
            Ok(r) => r,
            Err(_) => bail!("helper thread in {} panicked", self.name),
        }
    }

    /// Writes a per-namespace sysctl (`/proc/sys/...` resolves against the writer's netns).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let value = value.to_owned();
        self.run(move || std::fs::write(&path, value).with_context(|| format!("write {path}")))
    }

    /// SIGKILLs every process (not thread of this process) whose network namespace is this
    /// one, and returns their pids.
    pub fn kill_all(&self) -> Vec<i32> {
        process::kill_in_netns(self.inode)
    }

    /// `ip netns del`; the namespace is freed once nothing holds it.
    pub fn delete(self) -> Result<()> {
        let Self { name, file, .. } = self;
        drop(file);
        process::ip(&["netns", "del", &name]).map(drop)
    }
}

/// Names of the namespaces under /run/netns.
pub fn list() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}
