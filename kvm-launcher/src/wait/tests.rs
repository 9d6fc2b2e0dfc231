//! The wait loop against a stand-in QEMU: a real child process (`sh`) with a real pidfd,
//! and the test playing QEMU's side of the QMP socketpair. Covers every way a VM ends
//! and the stop path (power-off in time, grace expiry, a second request).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use super::*;
use crate::launch::pidfd_open;
use crate::qmp::Qmp;

/// A Vm whose "QEMU" is `sh -c script`; returns it with QEMU's end of QMP.
fn fake_vm(script: &str) -> (Vm, UnixStream) {
    let child = Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let pidfd = pidfd_open(child.id()).expect("pidfd");
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    let vm = Vm {
        child,
        pidfd,
        qmp: Qmp::new(ours).expect("qmp"),
        reaped: false,
        parent: None,
    };
    (vm, theirs)
}

/// A private stop pipe with `signals` already requested.
fn stop_with(signals: &[u8]) -> (UnixStream, UnixStream) {
    let (read, mut write) = UnixStream::pair().expect("stop pair");
    read.set_nonblocking(true).expect("nonblocking");
    write.write_all(signals).expect("request");
    (read, write)
}

const GREETING: &[u8] = b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n";

#[test]
fn a_guest_power_off_is_exit_zero_with_qemus_reason() {
    let (vm, mut qemu) = fake_vm("exit 0");
    qemu.write_all(GREETING).expect("greet");
    qemu.write_all(b"{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}\r\n")
        .expect("event");
    let exit = vm.wait(None, Duration::from_secs(3600)).expect("wait");
    assert_eq!(
        exit,
        VmExit::Guest {
            reason: "guest-shutdown".into()
        }
    );
    assert_eq!(exit.code(), 0);
}

#[test]
fn qemu_failing_or_being_killed_is_reported_as_such() {
    let (vm, _qemu) = fake_vm("exit 3");
    let exit = vm.wait(None, Duration::from_secs(3600)).expect("wait");
    assert_eq!(exit, VmExit::Failed { status: 3 });
    assert_eq!(exit.code(), 125);
    let (vm, _qemu) = fake_vm("kill -9 $$");
    let exit = vm.wait(None, Duration::from_secs(3600)).expect("wait");
    assert_eq!(exit, VmExit::Killed { signal: 9 });
    assert_eq!(exit.code(), 137);
}

#[test]
fn a_stop_asks_for_power_off_and_a_guest_that_obeys_ends_gracefully() {
    // "QEMU" exits 0 once something arrives on its stdin: the test writes there when it
    // sees system_powerdown on QMP, as a guest powering off would make QEMU exit.
    let (mut vm, qemu) = fake_vm("read x; exit 0");
    let mut stdin = vm.child.stdin.take().expect("stdin");
    let player = std::thread::spawn(move || {
        let mut w = qemu.try_clone().expect("clone");
        w.write_all(GREETING).expect("greet");
        let mut lines = BufReader::new(qemu).lines();
        assert_eq!(
            lines.next().expect("caps").expect("read"),
            r#"{"execute":"qmp_capabilities"}"#
        );
        w.write_all(b"{\"return\": {}}\r\n").expect("return");
        assert_eq!(
            lines.next().expect("powerdown").expect("read"),
            r#"{"execute":"system_powerdown"}"#
        );
        stdin.write_all(b"off\n").expect("power off");
    });
    let (stop, _keep) = stop_with(&[libc::SIGTERM as u8]);
    let exit = vm
        .wait(Some(stop.as_fd()), Duration::from_secs(3600))
        .expect("wait");
    player.join().expect("qemu player");
    assert_eq!(
        exit,
        VmExit::Stopped {
            signal: libc::SIGTERM,
            graceful: true
        }
    );
    assert_eq!(exit.code(), 143);
}

#[test]
fn a_guest_that_ignores_the_power_button_is_killed_after_the_grace_period() {
    let (vm, _qemu) = fake_vm("exec sleep 3600");
    let (stop, _keep) = stop_with(&[libc::SIGINT as u8]);
    let exit = vm
        .wait(Some(stop.as_fd()), Duration::from_millis(50))
        .expect("wait");
    assert_eq!(
        exit,
        VmExit::Stopped {
            signal: libc::SIGINT,
            graceful: false
        }
    );
    assert_eq!(exit.code(), 130);
}

#[test]
fn a_second_stop_request_kills_at_once() {
    // The grace period is an hour: only the second request can end this test.
    let (vm, _qemu) = fake_vm("exec sleep 3600");
    let (stop, _keep) = stop_with(&[libc::SIGTERM as u8, libc::SIGINT as u8]);
    let exit = vm
        .wait(Some(stop.as_fd()), Duration::from_secs(3600))
        .expect("wait");
    assert_eq!(
        exit,
        VmExit::Stopped {
            signal: libc::SIGTERM,
            graceful: false
        }
    );
}

#[test]
fn a_closed_stop_pipe_is_not_a_stop_request() {
    let (mut vm, _qemu) = fake_vm("read x; exit 0");
    let mut stdin = vm.child.stdin.take().expect("stdin");
    let (stop, writer) = stop_with(&[]);
    drop(writer);
    let guest_off = std::thread::spawn(move || stdin.write_all(b"off\n"));
    let exit = vm
        .wait(Some(stop.as_fd()), Duration::from_secs(3600))
        .expect("wait");
    guest_off.join().expect("join").expect("write");
    assert_eq!(
        exit,
        VmExit::Guest {
            reason: "unknown".into()
        }
    );
}

#[test]
fn exit_codes_follow_corks_contract() {
    let guest = VmExit::Guest {
        reason: "guest-shutdown".into(),
    };
    assert_eq!(guest.code(), 0);
    let stopped = VmExit::Stopped {
        signal: libc::SIGTERM,
        graceful: true,
    };
    assert_eq!(stopped.code(), 143);
    assert_eq!(VmExit::Killed { signal: 9 }.code(), 137);
    assert_eq!(VmExit::Failed { status: 1 }.code(), 125);
}
