//! BPF_MAP_UPDATE_BATCH, BPF_MAP_LOOKUP_BATCH and BPF_MAP_DELETE_BATCH, which aya 0.14
//! does not offer: one syscall for a whole table instead of one per entry to write it or
//! empty it, and two per entry (next key, then lookup) to read it back. At 100 000
//! prefixes per family that was most of a bottle's start. LPM tries implement all three
//! with the kernel's generic batch code (kernel/bpf/syscall.c); a kernel without them
//! answers EINVAL or ENOTSUPP and the caller falls back to one entry at a time. The raw syscall layout is `union bpf_attr`'s
//! `batch` member (include/uapi/linux/bpf.h).

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd};

use aya::Pod;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;
/// The kernel's ENOTSUPP (524), not in libc: what it answers for a map type without
/// batch operations.
const ENOTSUPP: i32 = 524;
/// Entries per lookup call: big enough that syscalls stop mattering, small enough to keep
/// the buffers modest.
const LOOKUP_CHUNK: usize = 4096;

#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Whether `e` says "this kernel or map type has no batch operations".
pub fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL | ENOTSUPP))
}

fn call(cmd: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: attr is a fully initialised prefix of `union bpf_attr` (the batch member);
    // every pointer in it is valid for the counts it gives (the callers' slices).
    unsafe { crate::direct::sys::bpf(cmd, attr) }.map(drop)
}

/// Writes `keys[i] → values[i]` for every i in one call (BPF_ANY). `K` and `V` must be
/// exactly the map's key and value types.
pub fn update<K: Pod, V: Pod>(map: BorrowedFd<'_>, keys: &[K], values: &[V]) -> io::Result<()> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    if keys.is_empty() {
        return Ok(());
    }
    let count =
        u32::try_from(keys.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count,
        map_fd: map.as_raw_fd() as u32,
        ..Default::default()
    };
    call_all(BPF_MAP_UPDATE_BATCH, &mut attr, "update wrote")
}

/// `call`, then an error unless the kernel did all `attr.count` entries: a short count is
/// not an error from the kernel, but not everything done either, so say so.
fn call_all(cmd: libc::c_long, attr: &mut BatchAttr, did: &str) -> io::Result<()> {
    let count = attr.count;
    call(cmd, attr)?;
    if attr.count != count {
        return Err(io::Error::other(format!(
            "batch {did} {} of {count} entries",
            attr.count
        )));
    }
    Ok(())
}

/// Removes every key of `keys` from the map in one call. `K` must be exactly the map's key
/// type, and every key must be there (the kernel stops at the first that is not).
pub fn delete<K: Pod>(map: BorrowedFd<'_>, keys: &[K]) -> io::Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let count =
        u32::try_from(keys.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        count,
        map_fd: map.as_raw_fd() as u32,
        ..Default::default()
    };
    call_all(BPF_MAP_DELETE_BATCH, &mut attr, "delete removed")
}

/// Calls `f` with every entry of the map, in the map's own iteration order, a chunk of
/// entries at a time: nothing is kept, so reading back 100 000 entries holds no copy of
/// them. On an error some entries may already have been given to `f`.
pub fn lookup_each<K: Pod, V: Pod>(map: BorrowedFd<'_>, mut f: impl FnMut(K, V)) -> io::Result<()> {
    let zero_k = || {
        // SAFETY: a Pod type is plain data: any bit pattern, zero included, is a value.
        unsafe { MaybeUninit::<K>::zeroed().assume_init() }
    };
    let zero_v = || {
        // SAFETY: as above.
        unsafe { MaybeUninit::<V>::zeroed().assume_init() }
    };
    let mut keys: Vec<K> = (0..LOOKUP_CHUNK).map(|_| zero_k()).collect();
    let mut values: Vec<V> = (0..LOOKUP_CHUNK).map(|_| zero_v()).collect();
    // The cursor: where the previous call stopped (out) is where the next starts (in).
    let mut cursor_in = zero_k();
    let mut cursor_out = zero_k();
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                &cursor_in as *const K as u64
            },
            out_batch: &mut cursor_out as *mut K as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: LOOKUP_CHUNK as u32,
            map_fd: map.as_raw_fd() as u32,
            ..Default::default()
        };
        let res = call(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let got = (attr.count as usize).min(LOOKUP_CHUNK);
        match res {
            Ok(()) => {}
            // The end of the map: `count` entries of this call are still valid.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                for (k, v) in keys[..got].iter().zip(&values[..got]) {
                    f(*k, *v);
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        if got == 0 {
            return Ok(()); // nothing more, said without ENOENT
        }
        for (k, v) in keys[..got].iter().zip(&values[..got]) {
            f(*k, *v);
        }
        cursor_in = cursor_out;
        first = false;
    }
}
