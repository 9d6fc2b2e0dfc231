//! Compiles the C eBPF programs with clang and generates the Rust view of the ABI header
//! with bindgen. The list of sources and headers is explicit: each one is a rerun trigger.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// One object per kernel hook family (see ebpf/), and a cgroup bottle's maps alone.
const PROGRAMS: &[&str] = &[
    "sock_addr",
    "sock_create",
    "skb",
    "sock_ops",
    "tap",
    "unix",
    "bottle_maps",
    "noop",
];
const HEADERS: &[&str] = &[
    "cork_abi.h",
    "cork_packet.h",
    "cork_bpf.h",
    "cork_maps.h",
    "cork_events.h",
    "cork_policy.h",
    "cork_unix.h",
    "cork_kern.h",
];

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let ebpf = manifest_dir.join("../../ebpf");
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

    let header = std::fs::read_to_string(include.join("cork_abi.h"))
        .context("reading ebpf/include/cork_abi.h")?;
    let mut names = String::new();
    for (enum_name, prefix, func) in ENUM_NAMES {
        names.push_str(&enum_name_fn(&header, enum_name, prefix, func)?);
    }
    names.push_str(&map_names(
        &std::fs::read_to_string(include.join("cork_maps.h"))
            .context("reading ebpf/include/cork_maps.h")?,
    )?);
    std::fs::write(out.join("names.rs"), names).context("writing the generated names")?;
    Ok(())
}

/// `pub const CORK_RULES_V4: &str = "cork_rules_v4";` for every map `cork_maps.h` declares
/// (`} cork_rules_v4 SEC(".maps");` or `CORK_RULES_V4_MAP(cork_rules_v4);`): Rust names a map only through these, so a map
/// renamed in C is a compile error in Rust, not a failed lookup at run time.
fn map_names(header: &str) -> anyhow::Result<String> {
    let mut out =
        String::from("/// Names of the maps in cork_maps.h (generated).\npub mod map_names {\n");
    let mut n = 0;
    for line in header.lines() {
        let line = line.trim();
        // `} name SEC(".maps");`, or a use of one of the header's map macros:
        // `CORK_BOTTLE_MAP(name, DEF);`, `CORK_OUTER(name, DEF);`.
        let declared = line
            .strip_prefix('}')
            .and_then(|rest| rest.trim().strip_suffix("SEC(\".maps\");"))
            .or_else(|| {
                ["CORK_BOTTLE_MAP(", "CORK_OUTER("]
                    .iter()
                    .find_map(|m| line.strip_prefix(m))
                    .and_then(|rest| rest.split_once(','))
                    .map(|(name, _)| name)
            });
        let Some(name) = declared else {
            continue;
        };
        let name = name.trim();
        out.push_str(&format!(
            "    pub const {}: &str = \"{name}\";\n",
            name.to_ascii_uppercase()
        ));
        n += 1;
    }
    if n == 0 {
        bail!("cork_maps.h declares no maps");
    }
    out.push_str("}\n");
    Ok(out)
}

/// C enums whose members' names are also their audit spelling: `CORK_REASON_DENY_RULE`
/// is `"deny_rule"`. The header is the one list; Rust gets the spelling generated here.
const ENUM_NAMES: &[(&str, &str, &str)] = &[
    ("cork_reason", "CORK_REASON_", "reason_name"),
    ("cork_hook", "CORK_HOOK_", "hook_name"),
    ("cork_verdict", "CORK_VERDICT_", "verdict_name"),
];

/// `pub fn FUNC(code: u32) -> Option<&'static str>` over the members of `enum NAME { .. }`.
fn enum_name_fn(header: &str, name: &str, prefix: &str, func: &str) -> anyhow::Result<String> {
    let open = format!("enum {name} {{");
    let start = header
        .find(&open)
        .with_context(|| format!("cork_abi.h has no `{open}`"))?;
    let body = &header[start + open.len()..];
    let body = &body[..body
        .find("};")
        .with_context(|| format!("`{open}` is not closed"))?];
    let mut arms = String::new();
    for line in body.lines() {
        let line = line.split("/*").next().unwrap_or_default().trim();
        let Some(member) = line.split('=').next().map(str::trim) else {
            continue;
        };
        let Some(suffix) = member.strip_prefix(prefix) else {
            continue;
        };
        arms.push_str(&format!(
            "        {name}::{member} => Some(\"{}\"),\n",
            suffix.to_ascii_lowercase()
        ));
    }
    if arms.is_empty() {
        bail!("`{open}` in cork_abi.h has no {prefix}* members");
    }
    Ok(format!(
        "/// The audit spelling of a `{name}` value (generated from cork_abi.h).\n\
         pub fn {func}(code: u32) -> Option<&'static str> {{\n    match code {{\n{arms}        \
         _ => None,\n    }}\n}}\n\n"
    ))
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
    let mut cmd = Command::new(clang);
    // x86 keeps a CPU's loads in the order the program makes them; cork_events.h relies
    // on that where it says CORK_LOADS_IN_ORDER, and fences elsewhere.
    if env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "x86_64") {
        cmd.arg("-DCORK_LOADS_IN_ORDER");
    }
    let output = cmd
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
