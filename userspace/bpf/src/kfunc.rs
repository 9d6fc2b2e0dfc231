//! The kernel-function (kfunc) calls in cork's objects, given their ids before aya loads
//! them. aya 0.14 cannot load a kfunc call: clang would declare the function as an extern
//! in a `.ksyms` BTF section that aya's BTF fix-up refuses, and aya relocates no
//! `BPF_PSEUDO_KFUNC_CALL`. So the C writes the call instruction itself (cork_kern.h):
//! `BPF_JMP|BPF_CALL` with src_reg `BPF_PSEUDO_KFUNC_CALL` and, as its imm, an index into
//! [`KFUNCS`] (`CORK_KFUNC_*` in cork_abi.h). Here each such instruction gets the running
//! kernel's BTF id of that function instead, in a copy of the object's bytes; aya passes
//! the instruction through untouched (it only follows `BPF_PSEUDO_CALL`s). An instruction
//! left as written names no function and the verifier refuses it: nothing loads half-done.

use aya::Btf;
use aya_obj::btf::BtfKind;
use object::{Object, ObjectSection, SectionKind};

use crate::abi;

/// The functions a `CORK_KFUNC_*` index names, by index.
const KFUNCS: &[(u32, &str)] = &[(abi::CORK_KFUNC_CAST_TO_KERN_CTX, "bpf_cast_to_kern_ctx")];

/// `BPF_JMP | BPF_CALL`, the opcode byte of a call.
const CALL: u8 = 0x85;
/// The register byte of a kfunc call as a little-endian object lays it out: src_reg
/// `BPF_PSEUDO_KFUNC_CALL` (2) in the high nibble, dst_reg 0.
const KFUNC_REGS: u8 = 0x20;
const INSN: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum KfuncError {
    #[error("reading the object as ELF")]
    Elf(#[source] object::Error),
    #[error("the object is big-endian; kfunc calls are resolved in little-endian objects only")]
    BigEndian,
    #[error(
        "instruction at byte {offset} of section {section} calls kfunc index {index}, which names no function"
    )]
    UnknownIndex {
        section: String,
        offset: usize,
        index: u32,
    },
    #[error(
        "the running kernel has no kernel function {function} in its BTF (cork's programs \
         call it; cork needs Linux 6.7 or later)"
    )]
    NotInKernel {
        function: &'static str,
        #[source]
        source: aya::BtfError,
    },
}

/// An object's bytes with every kfunc call given its id. Held as 8-byte words: the ELF
/// reader wants its headers aligned, which a `Vec<u8>` does not promise.
pub(crate) struct Resolved {
    words: Vec<u64>,
    len: usize,
}

impl Resolved {
    fn copy_of(bytes: &[u8]) -> Self {
        let mut out = Resolved {
            words: vec![0; bytes.len().div_ceil(INSN)],
            len: bytes.len(),
        };
        out.bytes_mut().copy_from_slice(bytes);
        out
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `words` owns at least `len` initialised bytes (`copy_of` sized and filled it),
        // u8 has no alignment or validity requirement, and the slice borrows `self`.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and the borrow of `self` is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

/// One kfunc call instruction of an object.
struct Call {
    section: String,
    /// Its byte offset in the file, and in its section.
    at: usize,
    offset: usize,
    /// What its imm holds: an index as compiled, a BTF id once resolved.
    imm: u32,
}

/// Every kfunc call instruction in the object's code sections.
fn calls_in(bytes: &[u8]) -> Result<Vec<Call>, KfuncError> {
    let file = object::File::parse(bytes).map_err(KfuncError::Elf)?;
    if !file.is_little_endian() {
        return Err(KfuncError::BigEndian);
    }
    let mut calls = Vec::new();
    for section in file.sections().filter(|s| s.kind() == SectionKind::Text) {
        let Some((start, size)) = section.file_range() else {
            continue;
        };
        let (start, size) = (start as usize, size as usize);
        for offset in (0..size / INSN).map(|i| i * INSN) {
            let insn = &bytes[start + offset..start + offset + INSN];
            if insn[0] == CALL && insn[1] == KFUNC_REGS && insn[2..4] == [0, 0] {
                calls.push(Call {
                    section: section.name().unwrap_or("?").to_owned(),
                    at: start + offset,
                    offset,
                    imm: u32::from_le_bytes([insn[4], insn[5], insn[6], insn[7]]),
                });
            }
        }
    }
    Ok(calls)
}

/// A copy of `bytes` with each kfunc call's imm replaced by the BTF id `btf` (the running
/// kernel's) gives its function. An object without kfunc calls comes back unchanged.
pub(crate) fn resolve(bytes: &[u8], btf: &Btf) -> Result<Resolved, KfuncError> {
    let mut out = Resolved::copy_of(bytes);
    for call in calls_in(bytes)? {
        let function = KFUNCS
            .iter()
            .find(|(i, _)| *i == call.imm)
            .map(|&(_, f)| f)
            .ok_or(KfuncError::UnknownIndex {
                section: call.section,
                offset: call.offset,
                index: call.imm,
            })?;
        let id = btf
            .id_by_type_name_kind(function, BtfKind::Func)
            .map_err(|source| KfuncError::NotInKernel { function, source })?;
        out.bytes_mut()[call.at + 4..call.at + INSN].copy_from_slice(&id.to_le_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel_btf() -> Btf {
        Btf::from_sys_fs().expect("/sys/kernel/btf/vmlinux is readable")
    }

    /// (byte offset in the file, imm) of each kfunc call.
    fn calls(bytes: &[u8]) -> Vec<(usize, u32)> {
        calls_in(bytes)
            .expect("an ELF object")
            .into_iter()
            .map(|c| (c.at, c.imm))
            .collect()
    }

    #[test]
    fn every_kfunc_call_of_the_skb_object_gets_the_kernels_id() {
        let btf = kernel_btf();
        let want = btf
            .id_by_type_name_kind("bpf_cast_to_kern_ctx", BtfKind::Func)
            .expect("this kernel has bpf_cast_to_kern_ctx");
        let before = calls(crate::skb::BYTES);
        assert!(!before.is_empty(), "skb.bpf.c calls bpf_cast_to_kern_ctx");
        assert!(
            before
                .iter()
                .all(|&(_, imm)| imm == abi::CORK_KFUNC_CAST_TO_KERN_CTX)
        );
        let resolved = resolve(crate::skb::BYTES, &btf).expect("resolves");
        let expected_calls: Vec<_> = before.iter().map(|&(at, _)| (at, want)).collect();
        assert_eq!(calls(resolved.bytes()), expected_calls);
        // Nothing else changed.
        let mut expected = crate::skb::BYTES.to_vec();
        for &(at, _) in &before {
            expected[at + 4..at + INSN].copy_from_slice(&want.to_le_bytes());
        }
        assert_eq!(resolved.bytes(), &expected[..]);
    }

    #[test]
    fn an_object_without_kfunc_calls_comes_back_unchanged() {
        assert!(calls(crate::tap::BYTES).is_empty());
        let resolved = resolve(crate::tap::BYTES, &kernel_btf()).expect("resolves");
        assert_eq!(resolved.bytes(), crate::tap::BYTES);
    }

    #[test]
    fn an_index_naming_no_function_is_refused_where_it_is() {
        let mut bad = Resolved::copy_of(crate::skb::BYTES);
        let first = &calls_in(crate::skb::BYTES).expect("an ELF object")[0];
        bad.bytes_mut()[first.at + 4..first.at + INSN].copy_from_slice(&77u32.to_le_bytes());
        let e = match resolve(bad.bytes(), &kernel_btf()) {
            Err(e) => e,
            Ok(_) => panic!("an unknown index resolved"),
        };
        let KfuncError::UnknownIndex {
            section,
            offset,
            index: 77,
        } = &e
        else {
            panic!("wrong error: {e}");
        };
        assert_eq!(section, &first.section);
        assert_eq!(*offset, first.offset);
        assert!(e.to_string().contains("index 77"), "{e}");
    }
}
