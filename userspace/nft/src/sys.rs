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

/// A chain: a bare name (to make sure it exists before deleting it) or a base chain.
pub(crate) struct Chain(NonNull<sys::nftnl_chain>);

/// What a base chain looks like in the kernel, for comparison with the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainInfo {
    pub table: String,
    pub name: String,
    pub chain_type: Option<String>,
    pub hook: Option<u32>,
    pub priority: Option<i32>,
    pub policy: Option<u32>,
}

impl Chain {
    pub(crate) fn new(table: &CStr, name: &CStr) -> Chain {
        // SAFETY: plain allocation; null means out of memory.
        let ptr = NonNull::new(unsafe { sys::nftnl_chain_alloc() })
            .unwrap_or_else(|| std::process::abort());
        // SAFETY: `ptr` is live; libnftnl copies the strings.
        unsafe {
            sys::nftnl_chain_set_u32(
                ptr.as_ptr(),
                sys::NFTNL_CHAIN_FAMILY as u16,
                u32::from(FAMILY),
            );
            sys::nftnl_chain_set_str(ptr.as_ptr(), sys::NFTNL_CHAIN_TABLE as u16, table.as_ptr());
            sys::nftnl_chain_set_str(ptr.as_ptr(), sys::NFTNL_CHAIN_NAME as u16, name.as_ptr());
        }
        Chain(ptr)
    }

    /// Makes it a base chain of `chain_type` on `hook` at `priority`, policy `policy`.
    pub(crate) fn base(self, chain_type: &CStr, hook: u32, priority: i32, policy: u32) -> Chain {
        let p = self.0.as_ptr();
        // SAFETY: `p` is live; libnftnl copies the string.
        unsafe {
            sys::nftnl_chain_set_u32(p, sys::NFTNL_CHAIN_HOOKNUM as u16, hook);
            sys::nftnl_chain_set_s32(p, sys::NFTNL_CHAIN_PRIO as u16, priority);
            sys::nftnl_chain_set_str(p, sys::NFTNL_CHAIN_TYPE as u16, chain_type.as_ptr());
            sys::nftnl_chain_set_u32(p, sys::NFTNL_CHAIN_POLICY as u16, policy);
        }
        self
    }

    /// Parses a NEWCHAIN message from a dump.
    pub(crate) fn parse(msg: &[u8]) -> Option<ChainInfo> {
        let chain = Chain::new(c"", c"");
        let p = chain.0.as_ptr();
        // SAFETY: `msg` is one complete, aligned netlink message (checked by the reader).
        if unsafe { sys::nftnl_chain_nlmsg_parse(msg.as_ptr().cast(), p) } < 0 {
            return None;
        }
        let is_set = |attr: u32| {
            // SAFETY: reading a flag of the live object.
            unsafe { sys::nftnl_chain_is_set(p, attr as u16) }
        };
        let text = |attr: u32| {
            // SAFETY: the live object returns its string (or null when unset); `cstr`
            // copies it before the object can go away.
            unsafe { cstr(sys::nftnl_chain_get_str(p, attr as u16)) }
        };
        let number = |attr: u32| {
            // SAFETY: reading a 32-bit attribute of the live object (signed values
            // such as the priority are the same bits).
            unsafe { sys::nftnl_chain_get_u32(p, attr as u16) }
        };
        let info = ChainInfo {
            table: text(sys::NFTNL_CHAIN_TABLE),
            name: text(sys::NFTNL_CHAIN_NAME),
            chain_type: is_set(sys::NFTNL_CHAIN_TYPE).then(|| text(sys::NFTNL_CHAIN_TYPE)),
            hook: is_set(sys::NFTNL_CHAIN_HOOKNUM).then(|| number(sys::NFTNL_CHAIN_HOOKNUM)),
            priority: is_set(sys::NFTNL_CHAIN_PRIO).then(|| number(sys::NFTNL_CHAIN_PRIO) as i32),
            policy: is_set(sys::NFTNL_CHAIN_POLICY).then(|| number(sys::NFTNL_CHAIN_POLICY)),
        };
        Some(info)
    }
}

// SAFETY: serialises one chain message into a buffer of nft_nlmsg_maxsize() bytes.
unsafe impl NlMsg for Chain {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, msg_type: MsgType) {
        let (kind, flags) = match msg_type {
            // CREATE without EXCL: adding an existing chain is a no-op update.
            MsgType::Add => (libc::NFT_MSG_NEWCHAIN, libc::NLM_F_ACK | libc::NLM_F_CREATE),
            // Deleting a chain deletes its rules with it.
            MsgType::Del => (libc::NFT_MSG_DELCHAIN, libc::NLM_F_ACK),
        };
        // SAFETY: the caller's buffer is large enough (trait contract).
        unsafe {
            let hdr = sys::nftnl_nlmsg_build_hdr(
                buf.cast::<c_char>(),
                kind as u16,
                FAMILY,
                flags as u16,
                seq,
            );
            sys::nftnl_chain_nlmsg_build_payload(hdr, self.0.as_ptr());
        }
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        // SAFETY: freed exactly once.
        unsafe { sys::nftnl_chain_free(self.0.as_ptr()) };
    }
}

/// A rule: the expressions of one plan rule, in a chain.
pub(crate) struct Rule(NonNull<sys::nftnl_rule>);

impl Rule {
    pub(crate) fn new(table: &CStr, chain: &CStr) -> Rule {
        // SAFETY: plain allocation; null means out of memory.
        let ptr = NonNull::new(unsafe { sys::nftnl_rule_alloc() })
            .unwrap_or_else(|| std::process::abort());
        // SAFETY: `ptr` is live; libnftnl copies the strings.
        unsafe {
            sys::nftnl_rule_set_u32(
                ptr.as_ptr(),
                sys::NFTNL_RULE_FAMILY as u16,
                u32::from(FAMILY),
            );
            sys::nftnl_rule_set_str(ptr.as_ptr(), sys::NFTNL_RULE_TABLE as u16, table.as_ptr());
            sys::nftnl_rule_set_str(ptr.as_ptr(), sys::NFTNL_RULE_CHAIN as u16, chain.as_ptr());
        }
        Rule(ptr)
    }

    /// A rule object carrying only family and table: the filter of a rule dump.
    pub(crate) fn table_filter(table: &CStr) -> Rule {
        // SAFETY: plain allocation; null means out of memory.
        let ptr = NonNull::new(unsafe { sys::nftnl_rule_alloc() })
            .unwrap_or_else(|| std::process::abort());
        // SAFETY: `ptr` is live; libnftnl copies the string.
        unsafe {
            sys::nftnl_rule_set_u32(
                ptr.as_ptr(),
                sys::NFTNL_RULE_FAMILY as u16,
                u32::from(FAMILY),
            );
            sys::nftnl_rule_set_str(ptr.as_ptr(), sys::NFTNL_RULE_TABLE as u16, table.as_ptr());
        }
        Rule(ptr)
    }

    /// Appends the rule's attributes to a message being built.
    ///
    /// # Safety
    /// `hdr` heads a message in a buffer with room for the attributes.
    pub(crate) unsafe fn build_payload(&self, hdr: *mut libc::nlmsghdr) {
        // SAFETY: per the contract; the rule is live.
        unsafe { sys::nftnl_rule_nlmsg_build_payload(hdr, self.0.as_ptr()) };
    }

    /// Appends an expression; the rule owns it from now on.
    pub(crate) fn push(&mut self, expr: Expr) {
        let e = expr.0.as_ptr();
        std::mem::forget(expr);
        // SAFETY: both are live; libnftnl takes ownership of `e` (freed with the rule).
        unsafe { sys::nftnl_rule_add_expr(self.0.as_ptr(), e) };
    }

    /// Parses a NEWRULE message from a dump; returns its table, chain and the rule.
    pub(crate) fn parse(msg: &[u8]) -> Option<(String, String, Rule)> {
        let rule = Rule::new(c"", c"");
        // SAFETY: `msg` is one complete, aligned netlink message (checked by the reader).
        if unsafe { sys::nftnl_rule_nlmsg_parse(msg.as_ptr().cast(), rule.0.as_ptr()) } < 0 {
            return None;
        }
        let p = rule.0.as_ptr();
        // SAFETY: TABLE and CHAIN are set by the parse of any NEWRULE message (null
        // reads as empty); copied at once.
        let (table, chain) = unsafe {
            (
                cstr(sys::nftnl_rule_get_str(p, sys::NFTNL_RULE_TABLE as u16)),
                cstr(sys::nftnl_rule_get_str(p, sys::NFTNL_RULE_CHAIN as u16)),
            )
        };
        Some((table, chain, rule))
    }

    /// The expressions in libnftnl's syntax (`[ meta load iifname => reg 1 ]`...), one
    /// per line, without the header line (which carries the kernel's handle).
    pub(crate) fn expressions(&self) -> String {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            // SAFETY: `buf` is writable for its length; snprintf NUL-terminates within it
            // and returns the length it wanted.
            let n = unsafe {
                sys::nftnl_rule_snprintf(
                    buf.as_mut_ptr().cast::<c_char>(),
                    buf.len(),
                    self.0.as_ptr(),
                    sys::NFTNL_OUTPUT_DEFAULT,
                    0,
                )
            };
            let n = usize::try_from(n).unwrap_or(0);
            if n < buf.len() {
                let text = String::from_utf8_lossy(&buf[..n]);
                return text.lines().skip(1).collect::<Vec<_>>().join("\n");
            }
            buf.resize(n + 1, 0);
        }
    }
}

// SAFETY: serialises one rule message into a buffer of nft_nlmsg_maxsize() bytes; a
// rule of a few dozen expressions is far below that.
unsafe impl NlMsg for Rule {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, msg_type: MsgType) {
        let (kind, flags) = match msg_type {
            MsgType::Add => (
                libc::NFT_MSG_NEWRULE,
                libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_APPEND,
            ),
            MsgType::Del => (libc::NFT_MSG_DELRULE, libc::NLM_F_ACK),
        };
        // SAFETY: the caller's buffer is large enough (trait contract).
        unsafe {
            let hdr = sys::nftnl_nlmsg_build_hdr(
                buf.cast::<c_char>(),
                kind as u16,
                FAMILY,
                flags as u16,
                seq,
            );
            sys::nftnl_rule_nlmsg_build_payload(hdr, self.0.as_ptr());
        }
    }
}

impl Drop for Rule {
    fn drop(&mut self) {
        // SAFETY: freed exactly once (with the expressions it owns).
        unsafe { sys::nftnl_rule_free(self.0.as_ptr()) };
    }
}

/// Copies a C string libnftnl returned (null reads as empty).
///
/// # Safety
/// `p` is null or a valid NUL-terminated string.
unsafe fn cstr(p: *const c_char) -> String {
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
