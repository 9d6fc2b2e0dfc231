//! `cargo xtask package`: a Debian package of cork built with `dpkg-deb` alone (no extra
//! tool to install): the release binary, the systemd unit (`packaging/cork.service`),
//! the README as documentation, `cork --help` as the manual's text. Output:
//! `target/debian/cork_<version>_<arch>.deb`; the package's file list is printed.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Libraries the binary links (nftnl/mnl for VM bottles' nftables) and what `cork vm`
/// runs; nftables itself is not needed (cork talks netlink).
const DEPENDS: &str = "libc6, libgcc-s1, libnftnl11, libmnl0";
const RECOMMENDS: &str = "qemu-system-x86";

pub fn package(root: &Path, version: &str) -> Result<()> {
    crate::run(crate::cargo().args([
        "build",
        "--release",
        "--locked",
        "-p",
        "cork",
        "--bin",
        "cork",
    ]))?;
    let arch = String::from_utf8(
        Command::new("dpkg")
            .arg("--print-architecture")
            .output()
            .context("dpkg --print-architecture")?
            .stdout,
    )?
    .trim()
    .to_owned();
    let out = root.join("target/debian");
    let stage = out.join(format!("cork_{version}_{arch}"));
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("remove {}", stage.display()))?;
    }
    let copy = |from: &Path, to: &str, mode: u32| -> Result<()> {
        let dst = stage.join(to);
        if let Some(dir) = dst.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::copy(from, &dst).with_context(|| format!("copy {}", from.display()))?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&dst, fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    let bin = root.join("target/release/cork");
    copy(&bin, "usr/bin/cork", 0o755)?;
    copy(
        &root.join("packaging/cork.service"),
        "lib/systemd/system/cork.service",
        0o644,
    )?;
    copy(
        &root.join("README.md"),
        "usr/share/doc/cork/README.md",
        0o644,
    )?;
    let help = Command::new(&bin)
        .arg("--help")
        .output()
        .context("cork --help")?;
    if !help.status.success() {
        bail!("cork --help failed");
    }
    let doc = stage.join("usr/share/doc/cork/cork-help.txt");
    fs::write(&doc, &help.stdout)?;
    let control = format!(
        "Package: cork\nVersion: {version}\nArchitecture: {arch}\nMaintainer: cork engineers <cork@example.invalid>\n\
         Depends: {DEPENDS}\nRecommends: {RECOMMENDS}\nSection: net\nPriority: optional\n\
         Description: kernel-enforced egress control for sandboxed AI agents\n \
         cork runs agents in bottles (cgroups or QEMU/KVM guests) whose network egress is\n \
         judged in the kernel by eBPF (and nftables for guests) against a per-bottle\n \
         allowlist, with a DNS proxy, a TLS-inspecting DLP proxy and an audit log.\n"
    );
    fs::create_dir_all(stage.join("DEBIAN"))?;
    fs::write(stage.join("DEBIAN/control"), control)?;
    let deb = out.join(format!("cork_{version}_{arch}.deb"));
    crate::run(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&stage)
            .arg(&deb),
    )?;
    crate::run(Command::new("dpkg-deb").arg("--contents").arg(&deb))?;
    eprintln!("package: {}", deb.display());
    Ok(())
}
