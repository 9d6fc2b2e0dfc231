//! The test guest with cork in it: the shared initramfs (`cargo xtask guest`) with a
//! second newc archive appended (the kernel unpacks both) holding a stripped copy of the
//! cork binary under test at `/opt/cork/bin/cork`, the shared libraries it links
//! (from `ldd`) in `/opt/cork/lib`, and files a test adds. The guest runs it through
//! the copied loader: `/opt/cork/lib/ld-linux-x86-64.so.2 --library-path /opt/cork/lib
//! /opt/cork/bin/cork ...` ([`GUEST_CORK`]). Everything lives in the World's directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::cork::cork_bin;
use crate::vm::Guest;
use crate::world::World;

/// How a guest script runs the cork binary this module put in it.
pub const GUEST_CORK: &str =
    "/opt/cork/lib/ld-linux-x86-64.so.2 --library-path /opt/cork/lib /opt/cork/bin/cork";

/// `guest` with cork appended, plus `extra` files (`(path in the guest under /opt/cork,
/// contents)`).
pub fn guest_with_cork(world: &World, guest: &Guest, extra: &[(&str, &str)]) -> Result<Guest> {
    let root = world.path("guest-cork", "d");
    let bin = root.join("opt/cork/bin");
    let lib = root.join("opt/cork/lib");
    fs::create_dir_all(&bin)?;
    fs::create_dir_all(&lib)?;
    let cork = cork_bin()?;
    // Stripped: the debug binary's symbols would triple what the guest unpacks in RAM.
    run(Command::new("strip")
        .arg("-o")
        .arg(bin.join("cork"))
        .arg(&cork))
    .context("strip (binutils) a copy of cork")?;
    for (soname, path) in shared_libraries(&cork)? {
        // The file itself, under the name the loader looks for.
        fs::copy(&path, lib.join(&soname))
            .with_context(|| format!("copy {} into the guest", path.display()))?;
    }
    for (rel, contents) in extra {
        let path = root.join("opt/cork").join(rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(&path, contents)?;
    }
    let extra_cpio = world.path("guest-cork", "cpio");
    newc(&root, &extra_cpio)?;
    let initrd = world.path("initrd-with-cork", "cpio");
    let mut combined =
        fs::read(&guest.initrd).with_context(|| format!("read {}", guest.initrd.display()))?;
    combined.extend(fs::read(&extra_cpio)?);
    fs::write(&initrd, combined)?;
    Ok(Guest {
        kernel: guest.kernel.clone(),
        initrd,
    })
}

/// `(soname, path)` of every library `ldd` names for `bin`, the loader included.
fn shared_libraries(bin: &Path) -> Result<Vec<(String, PathBuf)>> {
    let out = Command::new("ldd").arg(bin).output().context("run ldd")?;
    if !out.status.success() {
        bail!(
            "ldd {} failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut libs = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vdso has no file.
        let words: Vec<&str> = line.split_whitespace().collect();
        let path = match words.as_slice() {
            [_, "=>", path, ..] if path.starts_with('/') => *path,
            [path, ..] if path.starts_with('/') => *path,
            _ => continue,
        };
        let path = PathBuf::from(path);
        let soname = path
            .file_name()
            .and_then(|n| n.to_str())
            .context("a library path with a file name")?
            .to_owned();
        libs.push((soname, fs::canonicalize(&path)?));
    }
    if !libs.iter().any(|(n, _)| n.starts_with("ld-linux")) {
        bail!("ldd named no loader for {}", bin.display());
    }
    Ok(libs)
}

/// A newc archive of everything under `root`, paths relative to it.
fn newc(root: &Path, out: &Path) -> Result<()> {
    let list = Command::new("find")
        .arg(".")
        .current_dir(root)
        .output()
        .context("run find")?;
    let mut child = Command::new("cpio")
        .args(["--quiet", "-o", "-H", "newc", "-O"])
        .arg(out)
        .current_dir(root)
        .stdin(Stdio::piped())
        .spawn()
        .context("run cpio")?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().context("cpio stdin")?;
        stdin.write_all(&list.stdout)?;
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("cpio failed: {status}");
    }
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("{:?} failed: {}", cmd, String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}
