//! Owned libnftnl objects — table, chain, rule, expression — built, serialised into a
//! batch ([`nftnl::NlMsg`]), parsed from the kernel's netlink messages, and printed in
//! libnftnl's own expression syntax (what [`crate::kernel::read_back`] compares).
//!
//! The `nftnl` crate's safe types hide their raw pointers, which read-back needs, and
//! its NAT expression leaves out attributes the kernel reports back; so cork builds the
//! objects here on `nftnl_sys` and uses `nftnl` for the batch only.

use std::ffi::{CStr, CString, c_char, c_void};
use std::ptr::NonNull;

use nftnl::nftnl_sys as sys;
use nftnl::{MsgType, NlMsg};

mod chain;
mod rule;

pub(crate) use chain::{Chain, ChainInfo};
pub(crate) use rule::Rule;

/// `NLM_F_NONREC` (linux/netlink.h): delete only if empty (not in the libc crate).
const NLM_F_NONREC: u16 = 0x100;
/// `NFPROTO_INET`, the family of cork's table.
pub(crate) const FAMILY: u16 = libc::NFPROTO_INET as u16;

/// One expression, owned until it is added to a [`Rule`].
pub(crate) struct Expr(NonNull<sys::nftnl_expr>);

impl Expr {
    /// A new expression of type `name` ("meta", "cmp", "payload"...).
    pub(crate) fn new(name: &CStr) -> Expr {
        // SAFETY: `name` is a valid NUL-terminated string; a null return means the
        // allocation failed (or the name is unknown, which our fixed names never are).
        let ptr = unsafe { sys::nftnl_expr_alloc(name.as_ptr()) };
        Expr(NonNull::new(ptr).unwrap_or_else(|| std::process::abort()))
    }

    /// Sets a 32-bit attribute.
    pub(crate) fn u32(self, attr: u32, value: u32) -> Expr {
        // SAFETY: the expression is live and owned; libnftnl copies the value.
        unsafe { sys::nftnl_expr_set_u32(self.0.as_ptr(), attr as u16, value) };
        self
    }

    /// Sets a binary attribute (libnftnl copies `data`).
    pub(crate) fn data(self, attr: u32, data: &[u8]) -> Expr {
        // SAFETY: the expression is live and owned; `data` is valid for its length and
        // libnftnl copies it before returning.
        unsafe {
            sys::nftnl_expr_set(
                self.0.as_ptr(),
                attr as u16,
                data.as_ptr().cast::<c_void>(),
                data.len() as u32,
            )
        };
        self
    }
}

impl Drop for Expr {
    fn drop(&mut self) {
        // SAFETY: an Expr still owned (never added to a rule) is freed exactly once here.
        unsafe { sys::nftnl_expr_free(self.0.as_ptr()) };
    }
}

/// A table of family inet.
pub(crate) struct Table {
    ptr: NonNull<sys::nftnl_table>,
    /// Whether a delete means "only if it is empty".
    only_if_empty: bool,
}

impl Table {
    pub(crate) fn new(name: &CStr) -> Table {
        Table::with(name, false)
    }

    /// The table as a delete message that the kernel refuses (EBUSY) if anything is in it.
    pub(crate) fn if_empty(name: &CStr) -> Table {
        Table::with(name, true)
    }

    fn with(name: &CStr, only_if_empty: bool) -> Table {
        // SAFETY: plain allocation; null means out of memory.
        let ptr = NonNull::new(unsafe { sys::nftnl_table_alloc() })
            .unwrap_or_else(|| std::process::abort());
        // SAFETY: `ptr` is live; libnftnl copies the string.
        unsafe {
            sys::nftnl_table_set_u32(
                ptr.as_ptr(),
                sys::NFTNL_TABLE_FAMILY as u16,
                u32::from(FAMILY),
            );
            sys::nftnl_table_set_str(ptr.as_ptr(), sys::NFTNL_TABLE_NAME as u16, name.as_ptr());
        }
        Table { ptr, only_if_empty }
    }

    /// Parses a NEWTABLE message from a dump.
    pub(crate) fn parse(msg: &[u8]) -> Option<Table> {
        let table = Table::with(c"", false);
        // SAFETY: `msg` holds one complete, aligned netlink message (checked by the
        // reader); libnftnl reads within its nlmsg_len.
        let rc = unsafe { sys::nftnl_table_nlmsg_parse(msg.as_ptr().cast(), table.ptr.as_ptr()) };
        (rc >= 0).then_some(table)
    }

    pub(crate) fn name(&self) -> String {
        // SAFETY: NAME is always set (by `with` or the parse); libnftnl returns a pointer
        // into the object, valid while it lives, and we copy it at once.
        unsafe {
            cstr(sys::nftnl_table_get_str(
                self.ptr.as_ptr(),
                sys::NFTNL_TABLE_NAME as u16,
            ))
        }
    }

    pub(crate) fn flags(&self) -> u32 {
        // SAFETY: reading an attribute of a live object; unset reads as 0.
        unsafe { sys::nftnl_table_get_u32(self.ptr.as_ptr(), sys::NFTNL_TABLE_FLAGS as u16) }
    }

    pub(crate) fn family(&self) -> u32 {
        // SAFETY: as above.
        unsafe { sys::nftnl_table_get_u32(self.ptr.as_ptr(), sys::NFTNL_TABLE_FAMILY as u16) }
    }
}

// SAFETY: `write` serialises one table message; callers hand it a buffer of
// nft_nlmsg_maxsize() bytes (the Batch does), far more than a table message needs.
unsafe impl NlMsg for Table {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, msg_type: MsgType) {
        let (kind, flags) = match msg_type {
            // Without NLM_F_EXCL, adding an existing table is a no-op update.
            MsgType::Add => (libc::NFT_MSG_NEWTABLE, libc::NLM_F_ACK as u16),
            MsgType::Del if self.only_if_empty => (
                libc::NFT_MSG_DELTABLE,
                libc::NLM_F_ACK as u16 | NLM_F_NONREC,
            ),
            MsgType::Del => (libc::NFT_MSG_DELTABLE, libc::NLM_F_ACK as u16),
        };
        // SAFETY: the caller's buffer is large enough (trait contract).
        unsafe {
            let hdr =
                sys::nftnl_nlmsg_build_hdr(buf.cast::<c_char>(), kind as u16, FAMILY, flags, seq);
            sys::nftnl_table_nlmsg_build_payload(hdr, self.ptr.as_ptr());
        }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        // SAFETY: freed exactly once.
        unsafe { sys::nftnl_table_free(self.ptr.as_ptr()) };
    }
}

/// Copies a C string libnftnl returned (null reads as empty).
///
/// # Safety
/// `p` is null or a valid NUL-terminated string.
pub(crate) unsafe fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-null and NUL-terminated (caller's contract).
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// A `CString` of a name the plan made (names never contain NUL; if one did, it would
/// become empty and the kernel would refuse it with a clear error).
pub(crate) fn c(name: &str) -> CString {
    CString::new(name).unwrap_or_default()
}
