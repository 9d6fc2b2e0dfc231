//! `cork run` exit status: CMD's code, 128+N for a signal, 127 for a missing CMD, 125
//! for cork's own failures; bad manifests are reported as file:line:col and create
//! nothing.

use anyhow::Result;
use cork_integration::{World, host};

fn sh(script: &str) -> Vec<String> {
    ["sh", "-c", script].map(String::from).to_vec()
}

#[test]
fn exit_code_of_cmd_is_propagated() -> Result<()> {
    let world = World::new("exit_code_of_cmd_is_propagated")?;
    let m = world.manifest("a", "")?;
    let out = world.run(&mut world.cork_run(&m, "a", &sh("exit 7")))?;
    assert_eq!(out.code(), 7, "{out}");
    let out = world.run(&mut world.cork_run(&m, "a", &sh("exit 0")))?;
    assert_eq!(out.code(), 0, "{out}");
    Ok(())
}

#[test]
fn death_by_signal_becomes_128_plus_signal() -> Result<()> {
    let world = World::new("death_by_signal_becomes_128_plus_signal")?;
    let m = world.manifest("a", "")?;
    let out = world.run(&mut world.cork_run(&m, "a", &sh("kill -TERM $$")))?;
    assert_eq!(out.code(), 128 + 15, "{out}");
    let out = world.run(&mut world.cork_run(&m, "a", &sh("kill -KILL $$")))?;
    assert_eq!(out.code(), 128 + 9, "{out}");
    assert!(
        out.status.code().is_some(),
        "cork itself exits normally: {out}"
    );
    Ok(())
}

#[test]
fn missing_cmd_exits_127() -> Result<()> {
    let world = World::new("missing_cmd_exits_127")?;
    let m = world.manifest("a", "")?;
    let argv = vec!["/nonexistent/cork-test-no-such-program".to_owned()];
    let out = world.run(&mut world.cork_run(&m, "a", &argv))?;
    assert_eq!(out.code(), 127, "{out}");
    // Found on PATH is found (the lookup uses the command's environment, as std's did).
    let argv = vec!["cork-test-no-such-program-on-path".to_owned()];
    let out = world.run(&mut world.cork_run(&m, "a", &argv))?;
    assert_eq!(out.code(), 127, "{out}");
    let argv = vec!["sh".to_owned(), "-c".to_owned(), "exit 3".to_owned()];
    let out = world.run(&mut world.cork_run(&m, "a", &argv))?;
    assert_eq!(out.code(), 3, "{out}");
    Ok(())
}

#[test]
fn unexecutable_cmd_exits_126() -> Result<()> {
    let world = World::new("unexecutable_cmd_exits_126")?;
    let m = world.manifest("a", "")?;
    // A file that exists but is not executable: exec(2) says EACCES.
    let argv = vec![m.display().to_string()];
    let out = world.run(&mut world.cork_run(&m, "a", &argv))?;
    assert_eq!(out.code(), 126, "{out}");
    Ok(())
}

#[test]
fn bad_manifest_is_located_and_creates_nothing() -> Result<()> {
    let world = World::new("bad_manifest_is_located_and_creates_nothing")?;
    let name = world.bottle_name("bad");
    // Line 6, column 8: the value of `cidr`.
    let text = format!(
        "version = 1\n[bottle]\nname = \"{name}\"\n\n[[egress.allow]]\ncidr = \"198.51.100.0/33\"\n"
    );
    let m = world.write_manifest(&text)?;
    let located = format!("{}:6:8:", m.display());

    let check = world.run(world.cork(["check".as_ref(), m.as_os_str()]))?;
    assert_eq!(check.code(), 1, "{check}");
    assert!(
        check.stderr.contains(&located),
        "want {located} in:\n{check}"
    );

    let out = world.run(&mut world.cork_run(&m, "bad", &sh("exit 0")))?;
    assert_eq!(out.code(), 125, "{out}");
    assert!(out.stderr.contains(&located), "want {located} in:\n{out}");
    assert!(
        host::cork_cgroups(&format!("{name}-")).is_empty(),
        "no cgroup for a bad manifest"
    );
    assert!(
        host::cork_pins(&format!("{name}-")).is_empty(),
        "no pins for a bad manifest"
    );
    Ok(())
}

#[test]
fn valid_manifest_checks_clean() -> Result<()> {
    let world = World::new("valid_manifest_checks_clean")?;
    let m = world.manifest(
        "a",
        "[[egress.allow]]\ncidr = \"198.51.100.0/24\"\nports = [443, \"8000-8100\"]\n\n\
         [[egress.deny]]\ncidr = \"2001:db8::66/128\"\n\n[loopback]\nhost_ports = [8125]",
    )?;
    let out = world.run(world.cork(["check".as_ref(), m.as_os_str()]))?;
    assert_eq!(out.code(), 0, "{out}");
    // What cork understood, named after the file it read.
    assert_eq!(
        out.stdout,
        format!(
            "{}: ok — bottle {:?}, 2 rules, 1 IPv4 and 1 IPv6 prefixes, 0 domain rules, \
             1 host loopback ports, 0 credentials\n",
            m.display(),
            world.bottle_name("a")
        ),
        "{out}"
    );
    assert!(out.stderr.is_empty(), "{out}");
    Ok(())
}

#[test]
fn missing_manifest_file_is_cork_own_failure() -> Result<()> {
    let world = World::new("missing_manifest_file_is_cork_own_failure")?;
    let m = world.dir().join("absent.toml");
    let out = world.run(&mut world.cork_run(&m, "a", &sh("exit 0")))?;
    assert_eq!(out.code(), 125, "{out}");
    // 125 is every cork failure: the message says which one.
    let why = format!(
        "cork run: reading manifest {}: No such file or directory",
        m.display()
    );
    assert!(out.stderr.contains(&why), "want {why:?} in:\n{out}");
    Ok(())
}
