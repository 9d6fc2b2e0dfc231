//! The agent layer used directly, as a daemon will: two `BottleRuntime`s in one process,
//! with different policies, their services as tasks on one tokio runtime. Each bottle
//! reaches only what its own policy allows, its DNS proxy answers only its own names, and
//! stopping them removes every cgroup and pin they made.
//!
//! The runtimes live on a thread that entered the world's bottle namespace, so their
//! listeners, the tokio workers and the DNS proxy's upstream sockets are all there.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use cork_agent::BottleRuntime;
use cork_agent::mounts;
use cork_audit::AuditSink;
use cork_integration::dns_server::Zone;
use cork_integration::{Audit, Side, World};
use serde_json::json;

const CLIENT: &str = include_str!("../src/dns_client.py");

fn manifest(world: &World, label: &str, name: &str, v4: &str, v6: &str, port: u16) -> String {
    format!(
        "version = 1\n\n[bottle]\nname = \"{}\"\n\n\
         [[egress.allow]]\ndomain = \"{name}\"\nports = [{port}]\n\n\
         [[egress.allow]]\ncidr = \"{v6}/128\"\nports = [{port}]\n\n\
         [dns]\nupstream = [\"198.51.100.53\"]\n# {v4}\n",
        world.bottle_name(label)
    )
}

/// Runs the DNS client in the bottle whose `cgroup.procs` is `procs`: the child moves
/// itself into the cgroup before exec, so everything it does is judged.
fn run_in(procs: &Path, ops: &[&str]) -> Result<Vec<String>> {
    let procs = CString::new(procs.as_os_str().as_encoded_bytes()).context("procs path")?;
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(CLIENT).args(ops);
    cmd.stdin(Stdio::null()).stderr(Stdio::inherit());
    // SAFETY: between fork and exec the closure only calls open(2), write(2) and close(2)
    // on data prepared before the fork; nothing is allocated.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // "0" moves the writing process itself.
            let n = libc::write(fd, b"0".as_ptr().cast(), 1);
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            if n != 1 {
                return Err(err);
            }
            Ok(())
        });
    }
    let out = cmd.output().context("running the DNS client in a bottle")?;
    if !out.status.success() {
        bail!("the DNS client failed: {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

#[test]
fn two_runtimes_in_one_process_are_isolated_and_both_torn_down() -> Result<()> {
    let world = World::new("two_runtimes_in_one_process_are_isolated")?;
    let _dns = world.dns_server(
        "198.51.100.53:53",
        Zone::new().a("a.example.test", "198.51.100.10", 300).a(
            "b.example.test",
            "198.51.100.11",
            300,
        ),
    )?;
    let a4 = world.tcp_server(Side::Internet, "198.51.100.10:8001")?;
    let b4 = world.tcp_server(Side::Internet, "198.51.100.11:8002")?;
    let a6 = world.tcp_server(Side::Internet, "[2001:db8::10]:8001")?;
    let b6 = world.tcp_server(Side::Internet, "[2001:db8::11]:8002")?;
    let text_a = manifest(
        &world,
        "a",
        "a.example.test",
        "198.51.100.10",
        "2001:db8::10",
        8001,
    );
    let text_b = manifest(
        &world,
        "b",
        "b.example.test",
        "198.51.100.11",
        "2001:db8::11",
        8002,
    );
    let audit_path = world.path("runtime-audit", "jsonl");
    let sink_path = audit_path.clone();

    let (out_a, out_b, left) = world.bottle().run(move || {
        let sink = Arc::new(Mutex::new(AuditSink::open(Some(&sink_path))?));
        let policy_a = Arc::new(cork_policy::compile(&text_a, "a.toml")?);
        let policy_b = Arc::new(cork_policy::compile(&text_b, "b.toml")?);
        // Built on this thread: its workers are in the bottle namespace too.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let mut a = BottleRuntime::enforce(policy_a, sink.clone())?;
        let mut b = BottleRuntime::enforce(policy_b, sink.clone())?;
        assert_ne!(a.key().id(), b.key().id(), "two live bottles share an id");
        a.verify()?;
        b.verify()?;
        a.start(rt.handle())?;
        b.start(rt.handle())?;

        let ops = |own: &'static str, other: &'static str| {
            let (own4, own_port, other4, other_port, own6, other6) = if own == "a" {
                (
                    "198.51.100.10",
                    "8001",
                    "198.51.100.11",
                    "8002",
                    "2001:db8::10",
                    "2001:db8::11",
                )
            } else {
                (
                    "198.51.100.11",
                    "8002",
                    "198.51.100.10",
                    "8001",
                    "2001:db8::11",
                    "2001:db8::10",
                )
            };
            let own_name: &'static str = if own == "a" {
                "a.example.test"
            } else {
                "b.example.test"
            };
            let other_name: &'static str = if other == "a" {
                "a.example.test"
            } else {
                "b.example.test"
            };
            vec![
                "connect",
                own4,
                own_port, // not resolved yet: denied
                "udp",
                "198.51.100.53",
                own_name,
                "A",
                "connect",
                own4,
                own_port,
                "udp",
                "198.51.100.53",
                other_name,
                "A",
                "connect",
                other4,
                other_port,
                "connect",
                own6,
                own_port,
                "connect",
                other6,
                other_port,
            ]
        };
        let procs_a = a.cgroup_procs().context("bottle a has a cgroup")?;
        let procs_b = b.cgroup_procs().context("bottle b has a cgroup")?;
        let out_a = run_in(&procs_a, &ops("a", "b"))?;
        let out_b = run_in(&procs_b, &ops("b", "a"))?;
        // Still the manifest's state, with what DNS learned set aside.
        a.verify()?;
        b.verify()?;

        let cgroup_root = mounts::cgroup2_root()?;
        let bpffs = mounts::ensure_bpffs()?;
        let paths: Vec<PathBuf> = [a.key(), b.key()]
            .into_iter()
            .flat_map(|k| [k.cgroup_path(&cgroup_root), k.pin_dir(&bpffs), k.run_dir()])
            .collect();
        let mut problems = a.stop();
        problems.extend(b.stop());
        assert!(problems.is_empty(), "teardown problems: {problems:?}");
        drop(rt);
        let left: Vec<PathBuf> = paths.into_iter().filter(|p| p.exists()).collect();
        Ok((out_a, out_b, left))
    })?;

    for (out, own4, other4) in [
        (&out_a, "198.51.100.10", "198.51.100.11"),
        (&out_b, "198.51.100.11", "198.51.100.10"),
    ] {
        assert_eq!(out.len(), 7, "{out:?}");
        assert_eq!(out[0], "EPERM", "{out:?}");
        assert!(out[1].starts_with(&format!("NOERROR {own4} ")), "{out:?}");
        assert_eq!(out[2], "ok", "{out:?}");
        assert!(out[3].starts_with("REFUSED"), "{out:?}");
        assert!(!out[3].contains(other4), "{out:?}");
        assert_eq!(out[4], "EPERM", "{out:?}");
        assert_eq!(out[5], "ok", "{out:?}");
        assert_eq!(out[6], "EPERM", "{out:?}");
    }
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(a4.peers().len(), 1);
    assert_eq!(b4.peers().len(), 1);
    assert_eq!(a6.peers().len(), 1);
    assert_eq!(b6.peers().len(), 1);

    let audit = Audit::read(&audit_path)?;
    let (name_a, name_b) = (world.bottle_name("a"), world.bottle_name("b"));
    for (own, other4, other_port, other_name) in [
        (&name_a, "198.51.100.11", 8002, "b.example.test"),
        (&name_b, "198.51.100.10", 8001, "a.example.test"),
    ] {
        audit.expect(json!({"bottle": own, "event": "enforced"}))?;
        audit.expect(json!({
            "bottle": own, "layer": "kernel", "verdict": "deny", "reason": "default_deny",
            "dst": other4, "dport": other_port,
        }))?;
        audit.expect(
            json!({"bottle": own, "layer": "dns", "name": other_name, "verdict": "deny"}),
        )?;
    }
    Ok(())
}
