//! Project tasks: `cargo xtask deps | build | lint | guest | test | demo | bench |
//! bench-smoke | bench-report | bench-deps | bench-proxy | bench-vm | package | clean`.
//! CI runs `.ci/run`, which runs `cargo xtask deps` and `cargo xtask test`, the same
//! commands the README gives.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

mod bench;
mod guest;
mod package;

/// Debian packages cork builds and tests with. clang-19 + libbpf-dev compile the eBPF C
/// programs (libclang also serves bindgen); the rest are the real clients and tools the
/// integration tests drive. qemu-system-x86 runs VM bottles; busybox-static and cpio
/// build the test guest's initramfs (`cargo xtask guest`).
const APT_PACKAGES: &[&str] = &[
    "clang-19",
    "libclang-19-dev",
    "libbpf-dev",
    // cork-nft links libnftnl and libmnl (the nftnl/mnl crates' features name 1.2.4 and
    // 1.0.4, Debian 12's versions).
    "libnftnl-dev",
    "libmnl-dev",
    "linux-libc-dev",
    "iproute2",
    "nftables",
    "python3",
    // The OCSF validator's virtualenv (see `ocsf_venv`).
    "python3-venv",
    "curl",
    // Real clients of the proxy tests (tests/proxy.rs): a missing one fails them.
    "nodejs",
    "git",
    "procps",
    "util-linux",
    "qemu-system-x86",
    "busybox-static",
    "cpio",
    // Guest-side clients of tests/guestnet.rs (busybox's udhcpc and ping come from
    // busybox-static above): rdisc6, an independent reader of router advertisements
    // (RDNSS, MTU, prefix), and systemd-networkd (run in a netns, never as a service).
    "ndisc6",
    "systemd",
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = &args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("deps") => deps(),
        Some("build") => build(),
        Some("lint") => lint(),
        Some("guest") => guest::build(&root()),
        Some("test") => test(rest),
        Some("demo") => demo(),
        Some("bench") => bench::bench(rest),
        Some("bench-smoke") => bench::smoke(),
        Some("bench-report") => bench::report(),
        Some("bench-deps") => bench_deps(),
        Some("bench-vm") => bench_vm(),
        Some("package") => package::package(&root(), env!("CARGO_PKG_VERSION")),
        Some("bench-proxy") => bench::bench_proxy(rest),
        Some("clean") => clean(),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\
                 \x20 deps   install the Debian packages cork needs and the OCSF validator's venv (root)\n\
                 \x20 build  build everything (eBPF objects included)\n\
                 \x20 lint   cargo fmt --check and clippy -D warnings\n\
                 \x20 guest  build the VM test guest (cloud kernel + busybox initramfs) in target/guest\n\
                 \x20 test   lint, unit tests, then the privileged integration suite (root)\n\
                 \x20 demo   a bottle in a throwaway netns world: allowed and denied flows + audit\n\
                 \x20 bench  every bench (or --only one), the summary table, docs/bench/*.svg\n\
                 \x20 bench-smoke  every bench with tiny counts: runs and reports (part of test)\n\
                 \x20 bench-report the table and docs/bench/*.svg again from target/bench/*.json\n\
                 \x20 bench-deps   install the peer proxies bench-proxy compares with (root)\n\
                 \x20 bench-proxy  HTTPS req/s and latency: direct, cork, cork-relay, mitmproxy, squid, cork-b\n\
                 \x20 bench-vm     a guest on a bare tap vs in a VM bottle: connects/s, MiB/s, HTTPS req/s\n\
                 \x20 package      a Debian package (binary, systemd unit, docs) in target/debian\n\
                 \x20 clean  remove leftovers of killed runs (cork-* cgroups/pins, ck* netns)"
            );
            bail!("unknown or missing task")
        }
    }
}

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is in the workspace")
        .to_path_buf()
}

pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

pub(crate) fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn deps() -> Result<()> {
    if !is_root() {
        bail!("cargo xtask deps installs Debian packages: run it as root");
    }
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(APT_PACKAGES)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    ocsf_venv()
}

/// Where `deps` puts the OCSF validator's virtualenv (tests/audit_ocsf.rs runs
/// integration/src/ocsf_validate.py with its python).
const OCSF_VENV: &str = "target/ocsf-venv";

/// The virtualenv with the pinned packages of integration/ocsf-requirements.txt: the
/// OCSF schema data and a JSON Schema validator, so that the test suite checks cork's
/// OCSF output against the schema offline. Idempotent: pip leaves satisfied pins alone.
fn ocsf_venv() -> Result<()> {
    let venv = root().join(OCSF_VENV);
    if !venv.join("bin/python").exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "--disable-pip-version-check", "-r"])
        .arg(root().join("integration/ocsf-requirements.txt")))
}

fn build() -> Result<()> {
    run(cargo().args(["build", "--workspace", "--all-targets"]))
}

fn lint() -> Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

pub(crate) fn cork_bin(profile: &str) -> PathBuf {
    root().join("target").join(profile).join("cork")
}

fn test(extra: &[String]) -> Result<()> {
    lint()?;
    run(cargo().args(["test", "--workspace", "--exclude", "cork-integration"]))?;
    if !is_root() {
        bail!(
            "the integration suite needs root (cgroups, eBPF, netns); it is never skipped: \
             run `cargo xtask test` as root"
        );
    }
    run(cargo().args(["build", "-p", "cork", "--bin", "cork"]))?;
    guest::build(&root())?;
    let bin = cork_bin("debug");
    // Leftovers of an earlier, killed run would fail the leak check: sweep them first.
    run(cargo()
        .args([
            "run",
            "--quiet",
            "-p",
            "cork-integration",
            "--bin",
            "cork-sweep",
        ])
        .env("CORK_BIN", &bin))?;
    // The leak check runs alone, after every other test binary has finished. `--lib`:
    // the harness's own unit tests (the address-range guard among them) run too.
    run(cargo()
        .args(["test", "-p", "cork-integration", "--no-fail-fast", "--lib"])
        .args(
            integration_tests()?
                .iter()
                .flat_map(|t| ["--test".to_string(), t.clone()]),
        )
        .args(["--"])
        .args(extra)
        .env("CORK_BIN", &bin)
        .env("CORK_TEST_HARNESS", "1")
        // A failing test's message is what CI shows; a backtrace of the test harness
        // around it would push the message out of CI's excerpt.
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0"))?;
    // Every bench once with tiny counts, so none rots; its worlds are gone before the
    // leak check looks.
    bench::smoke()?;
    run(cargo()
        .args(["test", "-p", "cork-integration", "--test", "zz_no_leaks"])
        .env("CORK_BIN", &bin)
        .env("CORK_TEST_HARNESS", "1"))
}

/// Every test target of the integration crate except the final leak check.
fn integration_tests() -> Result<Vec<String>> {
    let dir = root().join("integration/tests");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".rs").map(str::to_string)
        })
        .filter(|n| n != "zz_no_leaks")
        .collect();
    names.sort();
    Ok(names)
}

fn demo() -> Result<()> {
    if !is_root() {
        bail!("the demo creates network namespaces and cgroups: run it as root");
    }
    run(cargo().args(["build", "-p", "cork", "--bin", "cork"]))?;
    // The VM phase boots the test guest.
    guest::build(&root())?;
    run(cargo()
        .args([
            "run",
            "--quiet",
            "-p",
            "cork-integration",
            "--bin",
            "cork-demo",
        ])
        .env("CORK_BIN", cork_bin("debug")))
}

/// Builds cork and the integration binaries `bins` (cargo's selection flags) in release,
/// then runs integration binary `bin` with `extra` and `CORK_BIN` set.
fn release_run(bin: &str, bins: &[&str], extra: &[String]) -> Result<()> {
    run(cargo()
        .args(["build", "--release", "-p", "cork", "--bin", "cork", "-p"])
        .arg("cork-integration")
        .args(bins))?;
    run(cargo()
        .args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "cork-integration",
            "--bin",
            bin,
            "--",
        ])
        .args(extra)
        .env("CORK_BIN", cork_bin("release")))
}

/// `cork-vm-bench`: the same guest on a bare tap and in a VM bottle, side by side.
fn bench_vm() -> Result<()> {
    if !is_root() {
        bail!("the VM benchmark boots guests on taps in network namespaces: run it as root");
    }
    guest::build(&root())?;
    release_run(
        "cork-vm-bench",
        &["--bin", "cork-vm-boot", "--bin", "cork-vm-bench"],
        &[],
    )
}

/// Debian packages of the peer proxies `bench-proxy` measures (not CI's: `deps` stays
/// lean). `squid-openssl` is the squid build with ssl-bump and `security_file_certgen`.
const BENCH_APT_PACKAGES: &[&str] = &["squid-openssl", "python3-venv"];

/// Where `bench-deps` puts mitmproxy's virtualenv; `cork-proxy-bench` looks there.
pub(crate) const BENCH_VENV: &str = "/var/cache/cork-bench/venv";

fn bench_deps() -> Result<()> {
    if !is_root() {
        bail!("cargo xtask bench-deps installs Debian packages: run it as root");
    }
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    // squid's maintainer scripts start a system squid listening in the host's network
    // namespace; the bench runs its own inside a namespace and wants none outside it.
    // policy-rc.d exiting 101 tells invoke-rc.d not to start services (Debian policy
    // 9.3.3.1); put one in place for the install unless the machine has its own.
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let ours = !policy.exists();
    if ours {
        std::fs::write(policy, "#!/bin/sh\nexit 101\n").context("write policy-rc.d")?;
        std::fs::set_permissions(policy, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .context("chmod policy-rc.d")?;
    }
    let installed = run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(BENCH_APT_PACKAGES)
        .env("DEBIAN_FRONTEND", "noninteractive"));
    if ours {
        std::fs::remove_file(policy).context("remove policy-rc.d")?;
    }
    installed?;
    let venv = Path::new(BENCH_VENV);
    if !venv.join("bin/python").exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(venv))?;
    }
    run(Command::new(venv.join("bin/pip")).args(["install", "-q", "--upgrade", "pip"]))?;
    run(Command::new(venv.join("bin/pip")).args(["install", "-q", "mitmproxy"]))
}

fn clean() -> Result<()> {
    run(cargo().args(["build", "-p", "cork", "--bin", "cork"]))?;
    run(Command::new(cork_bin("debug")).arg("clean"))?;
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .context("ip netns list")?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if name.starts_with("ck") {
            run(Command::new("ip").args(["netns", "del", name]))?;
        }
    }
    Ok(())
}
