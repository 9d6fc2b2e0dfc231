//! Compiles the C eBPF programs with clang and generates the Rust view of the ABI header
//! with bindgen. The list of sources and headers is explicit: each one is a rerun trigger.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// One object per kernel hook family (see ebpf/).
const PROGRAMS: &[&str] = &["sock_addr", "sock_create", "skb", "sock_ops"];
const HEADERS: &[&str] = &[
    "cork_abi.h",
    "cork_bpf.h",
    "cork_maps.h",
    "cork_events.h",
    "cork_policy.h",
];

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let ebpf = manifest_dir.join("../ebpf");
    let include = ebpf.join("include");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    println!("cargo:rerun-if-env-changed=CORK_CLANG");
    for h in HEADERS {
        println!("cargo:rerun-if-changed={}", include.join(h).display());
    }

    let clang = find_clang()?;
    for prog in PROGRAMS {
        let src = ebpf.join(format!("{prog}.bpf.c"));
        println!("cargo:rerun-if-changed={}", src.display());
        compile(&clang, &src, &include, &out.join(format!("{prog}.bpf.o")))?;
    }

    bindgen::Builder::default()
        .header(include.join("cork_abi.h").to_string_lossy())
        .clang_arg(format!("-I{}", include.display()))
        .allowlist_type("cork_.*")
        .allowlist_var("CORK_.*")
        .constified_enum_module("cork_.*")
        .derive_default(true)
        .derive_debug(true)
        .layout_tests(true)
        .generate()
        .context("bindgen could not read ebpf/include/cork_abi.h")?
        .write_to_file(out.join("abi.rs"))
        .context("writing the generated ABI bindings")?;
    Ok(())
}

/// clang-19 is what `cargo xtask deps` installs; CORK_CLANG overrides.
fn find_clang() -> anyhow::Result<String> {
    let candidates: Vec<String> = match env::var("CORK_CLANG") {
        Ok(c) => vec![c],
        Err(_) => vec!["clang-19".into(), "clang".into()],
    };
    for c in &candidates {
        if Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Ok(c.clone());
        }
    }
    bail!(
        "no clang found (tried {candidates:?}): the eBPF programs are C and need clang with the \
         BPF target. Install it with `cargo xtask deps` (apt clang-19 libbpf-dev) or point \
         CORK_CLANG at one."
    )
}

fn compile(clang: &str, src: &Path, include: &Path, obj: &Path) -> anyhow::Result<()> {
    let arch_include = format!("/usr/include/{}-linux-gnu", env::consts::ARCH);
    let output = Command::new(clang)
        .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
        .arg(format!("-I{}", include.display()))
        .arg(format!("-I{arch_include}"))
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(obj)
        .output()
        .with_context(|| format!("running {clang} on {}", src.display()))?;
    if !output.status.success() {
        bail!(
            "{clang} failed on {}:\n{}",
            src.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
