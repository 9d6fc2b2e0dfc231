//! `cargo xtask guest`: the test guest — Debian 12's cloud kernel (downloaded with apt,
//! unpacked, never installed) and a busybox initramfs whose `/init` (guest/init.sh) loads
//! the virtio and fw_cfg modules, configures eth0, runs the probe script cork passes in
//! fw_cfg, and powers off; `/bin/guest-https` is cork's static HTTPS client for probes
//! (busybox's wget verifies no certificate). Output in `target/guest/`: `vmlinuz`, `initrd.cpio`, and a
//! stamp; it is rebuilt only when the kernel package or the guest's files change.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The metapackage that names the current cloud kernel.
const KERNEL_META: &str = "linux-image-cloud-amd64";
/// Modules the guest needs, by module name; their dependencies are added from each
/// module's own `depends=` (the package ships no modules.dep: depmod runs on install).
/// NIC: virtio_net over virtio_pci (q35), virtio_mmio for microvm-style machines;
/// qemu_fw_cfg for cork's files; virtio_blk for disks; virtio_rng for early entropy
/// (TLS clients); button + evdev so the guest hears the ACPI power button (QMP
/// `system_powerdown`).
const MODULES: &[&str] = &[
    "virtio_net",
    "virtio_pci",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_mmio",
    "failover",
    "net_failover",
    "qemu_fw_cfg",
    "virtio_blk",
    "virtio_rng",
    "button",
    "evdev",
];
const INIT: &str = include_str!("../guest/init.sh");
const UDHCPC_SCRIPT: &str = include_str!("../guest/udhcpc.script");
const BUSYBOX: &str = "/bin/busybox";

pub fn guest_dir(root: &Path) -> PathBuf {
    root.join("target/guest")
}

/// Builds (or finds up to date) the test guest under `target/guest`.
pub fn build(root: &Path) -> Result<()> {
    let out = guest_dir(root);
    let package = kernel_package()?;
    let https = https_client(root)?;
    let https_bytes = fs::read(&https).with_context(|| format!("read {}", https.display()))?;
    let stamp = format!(
        "{package}\nmodules {}\ninit {:016x}\nudhcpc {:016x}\nguest-https {:016x}\n",
        MODULES.join(","),
        fnv(INIT.as_bytes()),
        fnv(UDHCPC_SCRIPT.as_bytes()),
        fnv(&https_bytes)
    );
    let stamp_path = out.join("stamp");
    let fresh = fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp)
        && out.join("vmlinuz").is_file()
        && out.join("initrd.cpio").is_file();
    if fresh {
        eprintln!("test guest up to date in {} ({package})", out.display());
        return Ok(());
    }
    let work = out.join("work");
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("remove {}", work.display()))?;
    }
    fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
    crate::run(
        Command::new("apt-get")
            .args(["download", "-qq", &package])
            .current_dir(&work),
    )
    .context("download the cloud kernel (`apt-get update` first if the package is unknown)")?;
    let deb = only_file(&work, ".deb")?;
    let unpacked = work.join("kernel");
    crate::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    let vmlinuz = only_file(&unpacked.join("boot"), "vmlinuz-")?;

    let rootfs = work.join("rootfs");
    for d in [
        "bin",
        "sbin",
        "proc",
        "sys",
        "dev",
        "etc",
        "tmp",
        "run",
        "lib/modules",
    ] {
        fs::create_dir_all(rootfs.join(d))?;
    }
    install_busybox(&rootfs)?;
    write_exec(&rootfs.join("init"), INIT)?;
    write_exec(&rootfs.join("etc/udhcpc.script"), UDHCPC_SCRIPT)?;
    fs::write(rootfs.join("bin/guest-https"), &https_bytes).context("write guest-https")?;
    fs::set_permissions(
        rootfs.join("bin/guest-https"),
        fs::Permissions::from_mode(0o755),
    )?;
    let modules = module_closure(&unpacked.join("lib/modules"))?;
    for (name, (path, _)) in &modules {
        fs::copy(path, rootfs.join("lib/modules").join(format!("{name}.ko")))
            .with_context(|| format!("copy {}", path.display()))?;
    }
    fs::write(
        rootfs.join("lib/modules/load-order"),
        load_order(&modules).join("\n") + "\n",
    )
    .context("write load-order")?;
    let initrd = work.join("initrd.cpio");
    cpio(&rootfs, &initrd)?;

    fs::copy(&vmlinuz, out.join("vmlinuz")).context("copy vmlinuz")?;
    fs::rename(&initrd, out.join("initrd.cpio")).context("move initrd")?;
    fs::remove_dir_all(&work).with_context(|| format!("remove {}", work.display()))?;
    fs::write(&stamp_path, &stamp).context("write stamp")?;
    eprintln!(
        "test guest in {}: {package}, modules {}",
        out.display(),
        load_order(&modules).join(" ")
    );
    Ok(())
}

/// Builds `cork-guest-https` statically linked (the guest has no libc) in a target
/// directory of its own (other RUSTFLAGS would otherwise rebuild the workspace's).
fn https_client(root: &Path) -> Result<PathBuf> {
    let target_dir = root.join("target/guest-build");
    let triple = "x86_64-unknown-linux-gnu";
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    crate::run(
        Command::new(cargo)
            .args(["build", "--release", "--locked", "-p", "cork-guest-https"])
            .args(["--target", triple])
            .arg("--target-dir")
            .arg(&target_dir)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .current_dir(root),
    )
    .context("build the guest's static HTTPS client")?;
    Ok(target_dir.join(triple).join("release/cork-guest-https"))
}

/// The real kernel package behind the metapackage (its candidate version's Depends).
fn kernel_package() -> Result<String> {
    let out = Command::new("apt-cache")
        .args(["show", "--no-all-versions", KERNEL_META])
        .stdin(Stdio::null())
        .output()
        .context("run apt-cache")?;
    if !out.status.success() {
        bail!(
            "apt-cache show {KERNEL_META} failed (run `apt-get update`): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let depends = text
        .lines()
        .find_map(|l| l.strip_prefix("Depends:"))
        .with_context(|| format!("{KERNEL_META} has no Depends line"))?;
    depends
        .split([',', '|'])
        .map(|d| d.split_whitespace().next().unwrap_or_default())
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_owned)
        .with_context(|| format!("{KERNEL_META} depends on no linux-image package: {depends}"))
}

/// The wanted modules plus everything they depend on: name → (path, dependencies).
fn module_closure(modules_dir: &Path) -> Result<BTreeMap<String, (PathBuf, Vec<String>)>> {
    let mut all = BTreeMap::new();
    index_modules(modules_dir, &mut all)?;
    let mut want: Vec<String> = MODULES.iter().map(|m| m.to_string()).collect();
    let mut got = BTreeMap::new();
    let mut seen = BTreeSet::new();
    while let Some(name) = want.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let path: &PathBuf = all
            .get(&name)
            .with_context(|| format!("module {name} is not in the kernel package (built in?)"))?;
        let bytes = fs::read(path).with_context(|| format!("read {}", path.display()))?;
        let deps = modinfo_depends(&bytes);
        want.extend(deps.iter().cloned());
        got.insert(name, (path.clone(), deps));
    }
    Ok(got)
}

/// Dependencies before dependents (a depth-first post-order), so the guest's first
/// insmod pass usually loads everything; its repeated passes stay as the safety net.
fn load_order(modules: &BTreeMap<String, (PathBuf, Vec<String>)>) -> Vec<String> {
    fn visit(
        name: &str,
        modules: &BTreeMap<String, (PathBuf, Vec<String>)>,
        done: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) {
        if !done.insert(name.to_owned()) {
            return;
        }
        if let Some((_, deps)) = modules.get(name) {
            for d in deps {
                visit(d, modules, done, out);
            }
        }
        out.push(name.to_owned());
    }
    let (mut done, mut out) = (BTreeSet::new(), Vec::new());
    for name in modules.keys() {
        visit(name, modules, &mut done, &mut out);
    }
    out
}

/// Indexes `*.ko` files by module name (file stem with '-' read as '_', as the kernel does).
fn index_modules(dir: &Path, into: &mut BTreeMap<String, PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            index_modules(&path, into)?;
        } else if let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".ko"))
        {
            into.insert(stem.replace('-', "_"), path);
        }
    }
    Ok(())
}

/// The `depends=` entry of a module's `.modinfo` section (NUL-separated `key=value`
/// strings; reading them from the whole file is enough: the key is unique).
fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    ko.split(|&b| b == 0)
        .find_map(|s| s.strip_prefix(b"depends="))
        .map(|d| {
            String::from_utf8_lossy(d)
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.replace('-', "_"))
                .collect()
        })
        .unwrap_or_default()
}

fn install_busybox(rootfs: &Path) -> Result<()> {
    let bin = rootfs.join("bin");
    fs::copy(BUSYBOX, bin.join("busybox"))
        .with_context(|| format!("copy {BUSYBOX} (`cargo xtask deps` installs busybox-static)"))?;
    let out = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .context("busybox --list")?;
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            std::os::unix::fs::symlink("busybox", bin.join(applet))
                .with_context(|| format!("link applet {applet}"))?;
        }
    }
    Ok(())
}

fn write_exec(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", path.display()))
}

/// An uncompressed newc archive of `rootfs` (the kernel unpacks it as is; no
/// decompression under emulation).
fn cpio(rootfs: &Path, out: &Path) -> Result<()> {
    let mut names = Vec::new();
    list(rootfs, rootfs, &mut names)?;
    names.sort();
    let mut child = Command::new("cpio")
        .args(["-o", "-H", "newc", "--quiet", "-R", "0:0"])
        .current_dir(rootfs)
        .stdin(Stdio::piped())
        .stdout(fs::File::create(out).with_context(|| format!("create {}", out.display()))?)
        .spawn()
        .context("run cpio (`cargo xtask deps` installs it)")?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().context("cpio stdin")?;
        for n in &names {
            writeln!(stdin, "{n}")?;
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("cpio failed: {status}");
    }
    Ok(())
}

fn list(base: &Path, dir: &Path, into: &mut Vec<String>) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let rel = path.strip_prefix(base)?.to_string_lossy().into_owned();
        into.push(rel);
        if path.is_dir() && !path.is_symlink() {
            list(base, &path, into)?;
        }
    }
    Ok(())
}

fn only_file(dir: &Path, pattern: &str) -> Result<PathBuf> {
    let found: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("list {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(pattern))
        })
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "expected one *{pattern}* in {}, found {found:?}",
            dir.display()
        ),
    }
}

/// FNV-1a: a stable fingerprint of the guest's files for the stamp.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_come_from_the_modinfo_strings() {
        let ko = b"\x7fELF...\0license=GPL\0depends=virtio_ring,virtio,net-failover\0retpoline=Y\0";
        assert_eq!(
            modinfo_depends(ko),
            ["virtio_ring", "virtio", "net_failover"]
        );
        assert!(modinfo_depends(b"\0depends=\0").is_empty());
        assert!(modinfo_depends(b"no modinfo").is_empty());
    }

    #[test]
    fn dependencies_load_first() {
        let m = |deps: &[&str]| {
            (
                PathBuf::new(),
                deps.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            )
        };
        let modules: BTreeMap<String, (PathBuf, Vec<String>)> = [
            ("virtio_net", m(&["virtio_ring", "virtio", "net_failover"])),
            ("net_failover", m(&["failover"])),
            ("failover", m(&[])),
            ("virtio", m(&["virtio_ring"])),
            ("virtio_ring", m(&[])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let order = load_order(&modules);
        let at = |n: &str| order.iter().position(|o| o == n).expect(n);
        assert_eq!(order.len(), 5);
        assert!(at("virtio_ring") < at("virtio"));
        assert!(at("virtio") < at("virtio_net"));
        assert!(at("failover") < at("net_failover"));
        assert!(at("net_failover") < at("virtio_net"));
    }
}
