//! [`Rule`]: a rule as built for a batch, and as parsed from a dump and printed for
//! comparison.

use std::ffi::{CStr, c_char, c_void};
use std::ptr::NonNull;

use nftnl::nftnl_sys as sys;
use nftnl::{MsgType, NlMsg};

use super::{Expr, FAMILY, cstr};

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
