//! Unix-domain sockets (cgroup/connect_unix, cgroup/sendmsg_unix): a bottle reaches no host
//! unix socket — by path or abstract name, stream or datagram — unless `[unix] allow` lists
//! it, never cork's control socket, and keeps the sockets that need no name (socketpairs).
//! Host services run in the bottle netns outside the bottle (abstract names are per network
//! namespace); every refusal is also tried outside the bottle, where it must not be EPERM.

use std::ffi::CString;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cork_agent::{BottleRuntime, mounts};
use cork_audit::AuditSink;
use cork_integration::unix_peer::{client_argv, serve};
use cork_integration::{Side, World};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// Names unique to this world: stream and datagram sockets by path (in its temp dir) and
/// by abstract name.
struct Names {
    stream_path: String,
    dgram_path: String,
    stream_abstract: String,
    dgram_abstract: String,
}

impl Names {
    fn new(world: &World) -> Self {
        let dir = world.dir().display().to_string();
        Names {
            stream_path: format!("{dir}/host-stream.sock"),
            dgram_path: format!("{dir}/host-dgram.sock"),
            stream_abstract: format!("@{}-host-stream", world.id()),
            dgram_abstract: format!("@{}-host-dgram", world.id()),
        }
    }

    fn serve_specs(&self) -> Vec<String> {
        vec![
            format!("stream:{}", self.stream_path),
            format!("stream:{}", self.stream_abstract),
            format!("dgram:{}", self.dgram_path),
            format!("dgram:{}", self.dgram_abstract),
        ]
    }

    /// The client operations, each answered by one line.
    fn ops(&self) -> Vec<String> {
        vec![
            format!("stream {}", self.stream_path),
            format!("stream {}", self.stream_abstract),
            format!("dgram {} p1 p2", self.dgram_path),
            format!("dgram {} a1", self.dgram_abstract),
            format!("dgram_connect {} c1", self.dgram_path),
        ]
    }
}

#[test]
fn unlisted_host_unix_sockets_are_refused_and_audited() -> Result<()> {
    let world = World::new("unlisted_host_unix_sockets_are_refused_and_audited")?;
    let names = Names::new(&world);
    let _server = serve(&world, &names.serve_specs())?;

    // Positive control: outside the bottle every one of them answers.
    let outside = world.run(
        world
            .command(Side::Bottle, "python3")
            .args(&client_argv(&names.ops())[1..]),
    )?;
    assert_eq!(
        outside.lines(),
        ["ok hello", "ok hello", "ok", "ok", "ok"],
        "{outside}"
    );

    let mut ops = names.ops();
    ops.push("pair".to_owned());
    let (out, audit) = world.run_argv("a", "", &client_argv(&ops))?;
    assert_eq!(
        out.lines(),
        ["EPERM", "EPERM", "EPERM", "EPERM", "EPERM", "ok ping pong"],
        "{out}"
    );
    for (hook, proto, dst) in [
        ("connect_unix", "unix_stream", &names.stream_path),
        ("connect_unix", "unix_stream", &names.stream_abstract),
        ("sendmsg_unix", "unix_dgram", &names.dgram_path),
        ("sendmsg_unix", "unix_dgram", &names.dgram_abstract),
        ("connect_unix", "unix_dgram", &names.dgram_path),
    ] {
        audit.expect(json!({
            "layer": "kernel", "hook": hook, "proto": proto, "dst": dst,
            "verdict": "deny", "reason": "default_deny", "rule": null, "comm": "python3",
        }))?;
    }
    // One event per refused attempt (the client stops at the first EPERM).
    let refused = audit.find(json!({"hook": "sendmsg_unix", "dst": names.dgram_path}));
    assert_eq!(refused.len(), 1, "{}", audit.dump());
    audit.expect_none(json!({"verdict": "allow", "proto": "unix_stream"}))?;
    Ok(())
}

#[test]
fn listed_unix_sockets_are_reachable() -> Result<()> {
    let world = World::new("listed_unix_sockets_are_reachable")?;
    let names = Names::new(&world);
    let mut server = serve(&world, &names.serve_specs())?;
    let body = format!(
        "[unix]\nallow = [{:?}, {:?}, {:?}, {:?}]\n",
        names.stream_path, names.stream_abstract, names.dgram_path, names.dgram_abstract
    );
    let (out, audit) = world.run_argv("a", &body, &client_argv(&names.ops()))?;
    assert_eq!(
        out.lines(),
        ["ok hello", "ok hello", "ok", "ok", "ok"],
        "{out}"
    );
    // The two sockets' datagrams may be printed in either order: a line read while
    // waiting for another is already in `seen`.
    let mut seen = Vec::new();
    for payload in ["p1", "p2", "a1", "c1"] {
        let line = format!("dgram {payload}");
        if !seen.contains(&line) {
            seen = server.wait_line(&line, WAIT)?;
        }
    }
    for (hook, proto, dst, rule) in [
        (
            "connect_unix",
            "unix_stream",
            &names.stream_path,
            "unix.allow[0]",
        ),
        (
            "connect_unix",
            "unix_stream",
            &names.stream_abstract,
            "unix.allow[1]",
        ),
        (
            "sendmsg_unix",
            "unix_dgram",
            &names.dgram_path,
            "unix.allow[2]",
        ),
        (
            "sendmsg_unix",
            "unix_dgram",
            &names.dgram_abstract,
            "unix.allow[3]",
        ),
        (
            "connect_unix",
            "unix_dgram",
            &names.dgram_path,
            "unix.allow[2]",
        ),
    ] {
        audit.expect(json!({
            "hook": hook, "proto": proto, "dst": dst, "rule": rule,
            "verdict": "allow", "reason": "unix_allow",
        }))?;
    }
    // Two datagrams from one socket to one name: one allow event, like unconnected UDP.
    let sent = audit.find(json!({"hook": "sendmsg_unix", "dst": names.dgram_path}));
    assert_eq!(sent.len(), 1, "{}", audit.dump());
    // Only the listed names are asserted: the host's name service (glibc trying nscd's
    // socket, say) may add denials of its own that this test is not about.
    for dst in [
        &names.stream_path,
        &names.stream_abstract,
        &names.dgram_path,
        &names.dgram_abstract,
    ] {
        audit.expect_none(json!({"verdict": "deny", "dst": dst}))?;
    }
    Ok(())
}

#[test]
fn the_control_socket_is_refused_however_it_is_spelled() -> Result<()> {
    let world = World::new("the_control_socket_is_refused_however_it_is_spelled")?;
    let ops: Vec<String> = [
        "stream /run/cork/cork.sock",
        "stream /var/run/cork/cork.sock",
        "dgram /run/cork/cork.sock x",
        "stream //run/cork/cork.sock",
        "stream /run/cork/../cork/cork.sock",
    ]
    .map(str::to_owned)
    .to_vec();
    // Outside a bottle nothing refuses the attempt (no daemon here: ENOENT, or an answer).
    let outside = world.run(
        world
            .command(Side::Bottle, "python3")
            .args(&client_argv(&ops)[1..]),
    )?;
    assert_eq!(outside.lines().len(), 5, "{outside}");
    assert!(!outside.stdout.contains("EPERM"), "{outside}");

    let (out, audit) = world.run_argv("a", "", &client_argv(&ops))?;
    assert_eq!(out.lines(), ["EPERM"; 5], "{out}");
    for (hook, dst) in [
        ("connect_unix", "/run/cork/cork.sock"),
        ("connect_unix", "/var/run/cork/cork.sock"),
        ("sendmsg_unix", "/run/cork/cork.sock"),
    ] {
        audit.expect(json!({
            "hook": hook, "dst": dst, "verdict": "deny", "reason": "control_socket",
        }))?;
    }
    // Other spellings are not listed, so the default denies them.
    for dst in ["//run/cork/cork.sock", "/run/cork/../cork/cork.sock"] {
        audit.expect(json!({"dst": dst, "verdict": "deny", "reason": "default_deny"}))?;
    }

    // Listing it is refused before anything runs, at its place in the manifest.
    let manifest = world.manifest("b", "[unix]\nallow = [\"/run/cork/cork.sock\"]")?;
    let check = world.run(world.cork(["check".as_ref(), manifest.as_os_str()]))?;
    assert_eq!(check.code(), 1, "{check}");
    let want = format!(
        "{}:7:10: unix.allow[0]: \"/run/cork/cork.sock\" is cork's control socket; bottles \
         may never connect to it",
        manifest.display()
    );
    assert!(check.stderr.contains(&want), "want {want}\n{check}");
    Ok(())
}

#[test]
fn a_bottles_own_unix_sockets() -> Result<()> {
    let world = World::new("a_bottles_own_unix_sockets")?;
    let dir = world.dir().display().to_string();
    let own_path = format!("{dir}/own.sock");
    let own_abstract = format!("@{}-own", world.id());
    let ops = vec![
        "pair".to_owned(),
        format!("own {own_path}"),
        format!("own {own_abstract}"),
    ];
    // Socketpairs (and anything inherited already connected) have no name to judge.
    // A listener the bottle binds itself is reached by its name, which the hook judges
    // before the kernel looks it up, so it cannot tell whose it is: unlisted, refused.
    let (out, audit) = world.run_argv("a", "", &client_argv(&ops))?;
    assert_eq!(out.lines(), ["ok ping pong", "EPERM", "EPERM"], "{out}");
    audit.expect(json!({"dst": own_path, "verdict": "deny", "reason": "default_deny"}))?;
    audit.expect(json!({"dst": own_abstract, "verdict": "deny", "reason": "default_deny"}))?;

    // Listed, they work.
    let body = format!("[unix]\nallow = [{own_path:?}, {own_abstract:?}]\n");
    let (out, audit) = world.run_argv("b", &body, &client_argv(&ops))?;
    assert_eq!(out.lines(), ["ok ping pong", "ok mine", "ok mine"], "{out}");
    audit.expect(json!({"dst": own_path, "verdict": "allow", "rule": "unix.allow[0]"}))?;
    audit.expect(json!({"dst": own_abstract, "verdict": "allow", "rule": "unix.allow[1]"}))?;
    Ok(())
}

/// Detaches the bpf link pinned at `pin` whoever holds it (BPF_OBJ_GET, BPF_LINK_DETACH):
/// what an intruder with CAP_BPF could do to a bottle's enforcement.
fn force_detach(pin: &Path) -> Result<()> {
    #[repr(C)]
    struct ObjGet {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: i32,
        _pad: u32,
    }
    #[repr(C)]
    struct LinkDetach {
        link_fd: u32,
        _pad: u32,
    }
    let path = CString::new(pin.as_os_str().as_encoded_bytes()).context("pin path")?;
    let mut get = ObjGet {
        pathname: path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
        path_fd: 0,
        _pad: 0,
    };
    // SAFETY: BPF_OBJ_GET (7) reads the NUL-terminated path, alive for the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, 7, &mut get, size_of::<ObjGet>() as u32) };
    if fd < 0 {
        bail!(
            "BPF_OBJ_GET {}: {}",
            pin.display(),
            std::io::Error::last_os_error()
        );
    }
    let mut detach = LinkDetach {
        link_fd: fd as u32,
        _pad: 0,
    };
    // SAFETY: BPF_LINK_DETACH (34) takes the link fd only.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            34,
            &mut detach,
            size_of::<LinkDetach>() as u32,
        )
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: fd came from BPF_OBJ_GET above and is closed once.
    unsafe { libc::close(fd as i32) };
    if rc < 0 {
        bail!("BPF_LINK_DETACH {}: {err}", pin.display());
    }
    Ok(())
}

#[test]
fn verify_notices_a_detached_unix_program() -> Result<()> {
    let world = World::new("verify_notices_a_detached_unix_program")?;
    let text = format!(
        "version = 1\n\n[bottle]\nname = \"{}\"\n\n[unix]\nallow = [\"@{}-x\"]\n",
        world.bottle_name("a"),
        world.id()
    );
    let audit_path = world.path("runtime-audit", "jsonl");
    let (before, after) = world.bottle().run(move || {
        let sink = Arc::new(Mutex::new(AuditSink::open(Some(&audit_path))?));
        let policy = Arc::new(cork_policy::compile(&text, "a.toml")?);
        let bottle = BottleRuntime::enforce(policy, sink)?;
        let before = bottle.verify().map_err(|e| format!("{e:#}"));
        let pin = bottle
            .key()
            .pin_dir(Path::new(mounts::BPFFS))
            .join("link_cork_connect_unix");
        let detached = force_detach(&pin);
        let after = bottle
            .verify()
            .map_err(|e| format!("{:?}", anyhow::Error::from(e)));
        let problems = bottle.stop();
        detached?;
        assert!(problems.is_empty(), "teardown problems: {problems:?}");
        Ok((before, after))
    })?;
    assert_eq!(before, Ok(()), "a fresh bottle verifies");
    let err = after.expect_err("verify must notice the detached connect_unix program");
    assert!(
        err.contains("ConnectUnix") && err.contains("has programs []"),
        "{err}"
    );
    Ok(())
}
