//! Golden tests of QEMU's command line: the whole argv for a typical VM, and each rule
//! (console, escaping, no default devices, limits) on its own.

use super::*;
use crate::fw_cfg;

fn config() -> VmConfig {
    VmConfig {
        name: "ck12ab34-web".into(),
        accel: Accel::Tcg,
        memory_mib: 512,
        cpus: 2,
        kernel: "/guest/vmlinuz".into(),
        initrd: Some("/guest/initrd.img".into()),
        append: "quiet panic=-1".into(),
        disks: vec![],
        mac: Mac([0x02, 0, 0, 0, 0, 0x01]),
        fw_cfg: vec![
            FwCfg::new(fw_cfg::CA_PEM, "/run/cork/ca.pem").expect("name"),
            FwCfg::new(fw_cfg::ENV, "/run/cork/env").expect("name"),
        ],
    }
}

const FDS: Fds = Fds { tap: 7, qmp: 9 };

fn strings(args: &[OsString]) -> Vec<String> {
    args.iter()
        .map(|a| a.to_str().expect("utf-8 argument").to_owned())
        .collect()
}

#[test]
fn a_typical_tcg_vm() {
    let args = strings(&qemu_args(&config(), FDS).expect("argv"));
    let expected = [
        "-name",
        "guest=ck12ab34-web,process=cork-ck12ab34-web",
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-no-reboot",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-sandbox",
        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        "-machine",
        "q35",
        "-accel",
        "tcg",
        "-m",
        "512",
        "-smp",
        "2",
        "-kernel",
        "/guest/vmlinuz",
        "-initrd",
        "/guest/initrd.img",
        "-append",
        "console=ttyS0 quiet panic=-1",
        "-netdev",
        "tap,id=n0,fd=7",
        "-device",
        "virtio-net-pci,netdev=n0,mac=02:00:00:00:00:01,romfile=",
        "-fw_cfg",
        "name=opt/cork/ca.pem,file=/run/cork/ca.pem",
        "-fw_cfg",
        "name=opt/cork/env,file=/run/cork/env",
        "-chardev",
        "socket,id=qmp,fd=9",
        "-mon",
        "chardev=qmp,mode=control",
    ];
    assert_eq!(args, expected);
}

#[test]
fn kvm_uses_the_host_cpu() {
    let mut cfg = config();
    cfg.accel = Accel::Kvm;
    let args = strings(&qemu_args(&cfg, FDS).expect("argv"));
    let at = args.iter().position(|a| a == "-accel").expect("-accel");
    assert_eq!(args[at + 1], "kvm");
    assert_eq!(args[at + 2..at + 4], ["-cpu", "host"]);
}

#[test]
fn exactly_one_nic_and_no_default_devices() {
    let args = strings(&qemu_args(&config(), FDS).expect("argv"));
    assert!(args.contains(&"-nodefaults".to_owned()));
    assert_eq!(args.iter().filter(|a| *a == "-netdev").count(), 1);
    assert!(!args.iter().any(|a| a == "-nic" || a == "-net"));
    // No user-mode (SLIRP) network anywhere.
    assert!(!args.iter().any(|a| a.starts_with("user")));
}

#[test]
fn console_is_added_unless_the_user_named_one() {
    assert_eq!(kernel_cmdline(""), "console=ttyS0");
    assert_eq!(kernel_cmdline("  ro quiet "), "console=ttyS0 ro quiet");
    assert_eq!(kernel_cmdline("console=hvc0 ro"), "console=hvc0 ro");
    assert_eq!(
        kernel_cmdline("ro console=ttyS1,115200"),
        "ro console=ttyS1,115200"
    );
    // After `--` the words are init's arguments, not the kernel's console.
    assert_eq!(
        kernel_cmdline("ro -- console=x"),
        "console=ttyS0 ro -- console=x"
    );
}

#[test]
fn commas_in_paths_are_doubled_where_qemu_parses_options() {
    let mut cfg = config();
    cfg.fw_cfg = vec![FwCfg::new(fw_cfg::PROBE, "/tmp/a,b/probe").expect("name")];
    cfg.disks = vec![Disk {
        path: "/img/x,y.qcow2".into(),
        format: DiskFormat::Qcow2,
        read_only: true,
    }];
    cfg.kernel = "/k,1/vmlinuz".into();
    let args = strings(&qemu_args(&cfg, FDS).expect("argv"));
    assert!(args.contains(&"name=opt/cork/probe,file=/tmp/a,,b/probe".to_owned()));
    assert!(
        args.contains(&"if=none,id=disk0,format=qcow2,file=/img/x,,y.qcow2,readonly=on".to_owned())
    );
    assert!(args.contains(&"virtio-blk-pci,drive=disk0".to_owned()));
    // -kernel takes a plain file name: no escaping there.
    assert!(args.contains(&"/k,1/vmlinuz".to_owned()));
}

#[test]
fn limits_are_checked_before_qemu_sees_them() {
    let mut cfg = config();
    cfg.memory_mib = 16;
    assert!(matches!(
        qemu_args(&cfg, FDS),
        Err(ArgvError::Memory { mib: 16 })
    ));
    let mut cfg = config();
    cfg.cpus = 0;
    assert!(matches!(
        qemu_args(&cfg, FDS),
        Err(ArgvError::Cpus { cpus: 0 })
    ));
    let mut cfg = config();
    cfg.name = "a,b".into();
    assert!(matches!(qemu_args(&cfg, FDS), Err(ArgvError::Name { .. })));
    let mut cfg = config();
    cfg.append = "x".repeat(2100);
    let e = qemu_args(&cfg, FDS).unwrap_err();
    assert!(e.to_string().contains("at most 2047"), "{e}");
}

#[test]
fn disk_formats_are_detected_from_the_magic() {
    let dir = std::env::temp_dir().join(format!("cork-kvm-argv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let q = dir.join("a.qcow2");
    std::fs::write(&q, b"QFI\xfb\0\0\0\x03").expect("write");
    let r = dir.join("b.img");
    std::fs::write(&r, b"\0\0").expect("write");
    assert_eq!(DiskFormat::detect(&q).expect("detect"), DiskFormat::Qcow2);
    assert_eq!(DiskFormat::detect(&r).expect("detect"), DiskFormat::Raw);
    assert!(DiskFormat::detect(&dir.join("missing")).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
