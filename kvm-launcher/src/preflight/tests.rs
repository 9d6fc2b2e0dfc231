//! Preflight failures simulated with paths that are missing, wrong, or not KVM, and the
//! messages a user would read.

use super::*;

fn host(kvm: &str) -> Host {
    Host {
        kvm_device: kvm.into(),
        tun_device: "/dev/null".into(),
        qemu: Some("/bin/echo".into()),
        path: OsString::new(),
    }
}

/// A per-test scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("cork-kvm-preflight-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_missing_kvm_device_names_modules_firmware_nesting_and_tcg() {
    let e = host("/nonexistent/kvm").check(Accel::Kvm).unwrap_err();
    assert!(matches!(e, PreflightError::KvmMissing { .. }), "{e:?}");
    let msg = e.to_string();
    for needle in [
        "/nonexistent/kvm does not exist",
        "modprobe kvm-intel",
        "modprobe kvm-amd",
        "firmware",
        "nested virtualisation",
        "--accel tcg",
    ] {
        assert!(msg.contains(needle), "{needle:?} missing from: {msg}");
    }
}

#[test]
fn a_regular_file_is_not_a_kvm_device() {
    let scratch = Scratch::new("not-a-device");
    let f = scratch.0.join("not-a-device");
    std::fs::write(&f, b"").expect("write scratch file");
    let e = host(f.to_str().expect("utf-8 path"))
        .check(Accel::Kvm)
        .unwrap_err();
    assert!(matches!(e, PreflightError::KvmNotDevice { .. }), "{e:?}");
    assert!(e.to_string().contains("not a character device"), "{e}");
}

#[test]
fn a_device_that_does_not_answer_the_kvm_api_is_refused() {
    // /dev/null opens read-write but answers every ioctl with ENOTTY.
    let e = host("/dev/null").check(Accel::Kvm).unwrap_err();
    assert!(
        matches!(
            e,
            PreflightError::KvmApi {
                op: "KVM_GET_API_VERSION",
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("does not answer the KVM API"), "{msg}");
    assert!(msg.contains("modprobe kvm-intel"), "{msg}");
}

#[test]
fn permission_errors_point_at_the_kvm_group() {
    let e = kvm::open_error(
        "/dev/kvm".into(),
        std::io::Error::from_raw_os_error(libc::EACCES),
    );
    assert!(matches!(e, PreflightError::KvmPermission { .. }), "{e:?}");
    assert!(e.to_string().contains("kvm group"), "{e}");
    assert!(e.to_string().contains("usermod -aG kvm"), "{e}");
    let e = kvm::open_error(
        "/dev/kvm".into(),
        std::io::Error::from_raw_os_error(libc::ENXIO),
    );
    assert!(matches!(e, PreflightError::KvmOpen { .. }), "{e:?}");
}

#[test]
fn tcg_needs_no_kvm_but_still_needs_qemu_and_tun() {
    let report = host("/nonexistent/kvm")
        .check(Accel::Tcg)
        .expect("tcg preflight");
    assert!(report.kvm.is_none());
    assert!(report.summary().contains("tcg"), "{}", report.summary());
    let mut h = host("/nonexistent/kvm");
    h.tun_device = "/nonexistent/tun".into();
    let e = h.check(Accel::Tcg).unwrap_err();
    assert!(e.to_string().contains("modprobe tun"), "{e}");
}

#[test]
fn missing_qemu_says_cargo_xtask_deps() {
    let scratch = Scratch::new("empty-bin");
    let empty = scratch.0.clone();
    let mut h = host("/nonexistent/kvm");
    h.qemu = None;
    h.path = empty.clone().into_os_string();
    let e = h.check(Accel::Tcg).unwrap_err();
    assert!(matches!(e, PreflightError::QemuMissing { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("cargo xtask deps"), "{msg}");
    assert!(msg.contains(empty.to_str().expect("utf-8")), "{msg}");
    h.qemu = Some("/bin/false".into());
    let e = h.check(Accel::Tcg).unwrap_err();
    assert!(matches!(e, PreflightError::QemuBroken { .. }), "{e:?}");
}

#[test]
fn accelerators_parse_by_their_qemu_names() {
    assert_eq!("kvm".parse::<Accel>().expect("kvm"), Accel::Kvm);
    assert_eq!("tcg".parse::<Accel>().expect("tcg"), Accel::Tcg);
    let e = "hvf".parse::<Accel>().unwrap_err();
    assert!(e.to_string().contains("use kvm or tcg"), "{e}");
}
