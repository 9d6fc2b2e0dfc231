//! [`Chain`]: a cork chain as built for a batch, and [`ChainInfo`], one as the kernel
//! reports it.

use std::ffi::{CStr, c_char, c_void};
use std::ptr::NonNull;

use nftnl::nftnl_sys as sys;
use nftnl::{MsgType, NlMsg};

use super::{FAMILY, cstr};

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
