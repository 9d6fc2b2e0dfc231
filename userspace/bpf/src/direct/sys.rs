//! The `bpf(2)` commands the direct loader makes itself, each with its `union bpf_attr`
//! member written out (include/uapi/linux/bpf.h), the way `query.rs` does for
//! BPF_PROG_QUERY. Every function takes and returns owned or borrowed fds, never raw ones
//! it does not own.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use aya_obj::generated::bpf_insn;

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_MAP_FREEZE: libc::c_long = 22;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_CGROUP_SOCK_ADDR: u32 = 18;
/// Big enough for the verifier's log of a refused cork program.
const LOG_BYTES: usize = 1 << 20;

/// `bpf(cmd, attr, sizeof(*attr))`: what the kernel returns (an fd, or 0).
///
/// # Safety
/// `A` must be the `#[repr(C)]` `union bpf_attr` member that `cmd` reads, and every pointer
/// in it valid for the access the kernel makes during the call.
pub(crate) unsafe fn bpf<A>(cmd: libc::c_long, attr: &mut A) -> io::Result<libc::c_long> {
    // SAFETY: the caller's promise; the size passed is attr's own.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut A,
            std::mem::size_of::<A>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// An fd the kernel just returned.
fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: a new fd from the kernel, owned by nothing else yet.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// BPF_MAP_*_ELEM.
#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// Commands that take one fd (BPF_MAP_FREEZE).
#[repr(C)]
#[derive(Default)]
struct FdAttr {
    fd: u32,
    _pad: u32,
}

/// BPF_PROG_LOAD, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// BPF_LINK_CREATE: the common part (no target-specific options).
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    _rest: [u64; 2],
}

/// BPF_PROG_ATTACH (and DETACH): the attachment without a link.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    relative_fd: u32,
    expected_revision: u64,
}

/// BPF_OBJ_PIN.
#[repr(C)]
#[derive(Default)]
struct ObjPinAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    _pad: u32,
}

/// BPF_OBJ_GET_INFO_BY_FD.
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// Writes `value` at key 0 of an array map whose values are `value.len()` bytes.
pub(super) fn write_first(map: BorrowedFd<'_>, value: &[u8]) -> io::Result<()> {
    let key = 0u32;
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: value.as_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: attr points at `key` (the array's 4-byte key) and `value` (the map's value
    // size, the caller's promise), both alive for the call; the kernel only reads them.
    unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map(drop)
}

/// Writes `value` at `key` of `map` (BPF_ANY).
pub(crate) fn update(map: BorrowedFd<'_>, key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: attr points at `key` and `value`, the map's key and value sizes (the
    // caller's promise), both alive for the call; the kernel only reads them.
    unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map(drop)
}

/// Reads the value at `key` of `map` into `value` (ENOENT when there is none).
pub(crate) fn lookup(map: BorrowedFd<'_>, key: &[u8], value: &mut [u8]) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_mut_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: attr points at `key` (read) and `value` (written), the map's key and value
    // sizes (the caller's promise), both alive for the call.
    unsafe { bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) }.map(drop)
}

/// Makes a map read-only for userspace from now on (programs see constant data).
pub(super) fn freeze(map: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = FdAttr {
        fd: map.as_raw_fd() as u32,
        ..Default::default()
    };
    // SAFETY: attr holds an fd only.
    unsafe { bpf(BPF_MAP_FREEZE, &mut attr) }.map(drop)
}

/// A refused BPF_PROG_LOAD: the error and the verifier's log.
pub(super) struct Refused {
    pub error: io::Error,
    pub log: String,
}

/// Loads a cgroup sock_addr program for `attach_type`. A refusal carries the verifier's
/// log (asked for on a second try, as aya does, so a load that works costs no log).
pub(super) fn load_sock_addr(
    name: &str,
    insns: &[bpf_insn],
    license: &CStr,
    attach_type: u32,
) -> Result<OwnedFd, Refused> {
    let mut prog_name = [0u8; 16];
    for (d, s) in prog_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name,
        expected_attach_type: attach_type,
        ..Default::default()
    };
    // SAFETY: attr points at the instructions (insn_cnt of them) and the NUL-terminated
    // license, both alive for the call; no log buffer.
    let error = match unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
        Ok(fd) => return Ok(owned(fd)),
        Err(e) => e,
    };
    let mut log = vec![0u8; LOG_BYTES];
    attr.log_level = 1;
    attr.log_size = log.len() as u32;
    attr.log_buf = log.as_mut_ptr() as u64;
    // SAFETY: as above, plus the log buffer: log_size bytes, writable, alive for the call.
    if let Ok(fd) = unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
        return Ok(owned(fd));
    }
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    Err(Refused {
        error,
        log: String::from_utf8_lossy(&log[..end]).into_owned(),
    })
}

/// The kernel's id of a loaded program (`struct bpf_prog_info` starts with type, id).
pub(crate) fn prog_id(prog: BorrowedFd<'_>) -> io::Result<u32> {
    let mut info = [0u32; 2];
    let mut attr = InfoAttr {
        bpf_fd: prog.as_raw_fd() as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: attr points at `info`: info_len bytes, writable, alive for the call.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }?;
    Ok(info[1])
}

/// Attaches `prog` to the cgroup `target` through a bpf link (the same kind aya makes).
pub(super) fn link_cgroup(
    prog: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    attach_type: u32,
) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_fd: target.as_raw_fd() as u32,
        attach_type,
        ..Default::default()
    };
    // SAFETY: attr holds two fds and integers only.
    unsafe { bpf(BPF_LINK_CREATE, &mut attr) }.map(owned)
}

/// Attaches `prog` to the cgroup `target` without a link (`BPF_F_ALLOW_MULTI`, beside the
/// linked programs): it stays until the cgroup itself is freed, whatever fds close.
pub(crate) fn attach_for_cgroup_life(
    prog: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    attach_type: u32,
) -> io::Result<()> {
    const BPF_F_ALLOW_MULTI: u32 = 1 << 1;
    let mut attr = ProgAttachAttr {
        target_fd: target.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    // SAFETY: attr holds two fds and integers only.
    unsafe { bpf(BPF_PROG_ATTACH, &mut attr) }.map(drop)
}

/// Pins `object` (a link here) at `path` on bpffs.
pub(crate) fn pin(object: BorrowedFd<'_>, path: &CStr) -> io::Result<()> {
    let mut attr = ObjPinAttr {
        pathname: path.as_ptr() as u64,
        bpf_fd: object.as_raw_fd() as u32,
        ..Default::default()
    };
    // SAFETY: attr points at the NUL-terminated path, alive for the call.
    unsafe { bpf(BPF_OBJ_PIN, &mut attr) }.map(drop)
}

/// Opens the object pinned at `path` (a program here).
pub(crate) fn obj_get(path: &CStr) -> io::Result<OwnedFd> {
    let mut attr = ObjPinAttr {
        pathname: path.as_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: attr points at the NUL-terminated path, alive for the call.
    unsafe { bpf(BPF_OBJ_GET, &mut attr) }.map(owned)
}

/// Deletes `key` (its bytes) from `map`: ENOENT when there was none.
pub(crate) fn delete(map: BorrowedFd<'_>, key: &[u8]) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: attr points at `key`, the map's key size (the caller's promise), alive for
    // the call; the kernel only reads it.
    unsafe { bpf(BPF_MAP_DELETE_ELEM, &mut attr) }.map(drop)
}
