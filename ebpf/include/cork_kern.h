/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * cork_kern.h — what cork's programs read of the kernel's own structures rather than of
 * the context the program type exposes, and the kernel function that hands them out.
 * Only the fields read are declared; preserve_access_index makes clang emit CO-RE
 * relocations for them (the `___cork` suffix is a CO-RE flavour: matched to sk_buff and
 * sock in the running kernel's BTF, whatever their layout there).
 */
#ifndef CORK_KERN_H
#define CORK_KERN_H

#include "cork_abi.h"

struct sock___cork {
	/* The socket's local storage of every map (bpf_sk_storage): NULL while it has none. */
	void *sk_bpf_storage;
} __attribute__((preserve_access_index));

struct sk_buff___cork {
	struct sock___cork *sk;
} __attribute__((preserve_access_index));

#define CORK_STR_(x) #x
#define CORK_STR(x) CORK_STR_(x)

/*
 * bpf_cast_to_kern_ctx(skb): the program's __sk_buff as the kernel's struct sk_buff, a
 * pointer the verifier trusts. The verifier replaces the call with a register move, so
 * this costs nothing at run time. The instruction is written out (BPF_JMP|BPF_CALL = 0x85,
 * src_reg BPF_PSEUDO_KFUNC_CALL = 2, imm the function's index; see
 * CORK_KFUNC_CAST_TO_KERN_CTX) because clang would emit an extern in a `.ksyms` section
 * that aya cannot load; the loader writes the kernel's BTF id into the imm.
 */
static __always_inline struct sk_buff___cork *cork_kern_skb(struct __sk_buff *skb)
{
	struct sk_buff___cork *kskb;

	asm volatile("r1 = %[ctx]\n\t"
		     ".long 0x2085\n\t"
		     ".long " CORK_STR(CORK_KFUNC_CAST_TO_KERN_CTX) "\n\t"
		     "%[kskb] = r0"
		     : [kskb] "=r"(kskb)
		     : [ctx] "r"(skb)
		     : "r0", "r1", "r2", "r3", "r4", "r5", "memory");
	return kskb;
}

/*
 * Has the packet's socket no local storage at all (of any map, cork_sock included)? One
 * load from the kernel's socket where bpf_sk_storage_get is a helper call — the costliest
 * step left on an allowed packet's path (helpers return through a mitigation thunk on this
 * CPU). Only for a full socket: a request or time-wait socket is a smaller object without
 * the field, so the caller checks the state first.
 */
static __always_inline int cork_full_sk_has_no_storage(struct __sk_buff *skb)
{
	struct sock___cork *sk = cork_kern_skb(skb)->sk;

	return sk && !sk->sk_bpf_storage;
}

#endif
