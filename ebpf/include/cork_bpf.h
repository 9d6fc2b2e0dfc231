/* SPDX-License-Identifier: Apache-2.0 */
/* Common includes and small helpers for every cork program (kernel side only). */
#ifndef CORK_BPF_H
#define CORK_BPF_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "cork_abi.h"

/* Not exported by any uapi header the BPF target can include. */
#define CORK_AF_INET 2
#define CORK_AF_INET6 10
#define CORK_SOCK_STREAM 1
#define CORK_SOCK_DGRAM 2
#define CORK_SOCK_RAW 3

/* sock_addr / cgroup_sock return values: 1 lets the operation proceed, 0 fails it with
 * EPERM (kernel/bpf/cgroup.c, __cgroup_bpf_run_filter_sock_addr). cgroup_skb: 1 passes the
 * packet, 0 drops it. */
#define CORK_PASS 1
#define CORK_BLOCK 0

/* Store to / load from a context field at a constant offset from the unmodified ctx
 * pointer. Plain C lets clang hoist `&ctx->field` into another register, and the verifier
 * refuses context access through a modified pointer ("dereference of modified ctx ptr"). */
#define CORK_CTX_STORE32(ctx, field, val)                                                   \
	asm volatile("*(u32 *)(%[c] + %[o]) = %[v]"                                        \
		     :                                                                      \
		     : [c] "r"(ctx), [o] "i"(__builtin_offsetof(typeof(*(ctx)), field)),    \
		       [v] "r"((__u32)(val))                                                \
		     : "memory")
#define CORK_CTX_LOAD32(ctx, field)                                                         \
	({                                                                                  \
		__u32 __v;                                                                  \
		asm volatile("%[v] = *(u32 *)(%[c] + %[o])"                                 \
			     : [v] "=r"(__v)                                                \
			     : [c] "r"(ctx), [o] "i"(__builtin_offsetof(typeof(*(ctx)), field)) \
			     : "memory");                                                   \
		__v;                                                                        \
	})

/* A destination as the policy sees it: IPv4-mapped IPv6 folded to IPv4, unspecified
 * folded to loopback. addr holds IPv4 in its first 4 bytes. */
struct cork_dst {
	__u8 addr[16];
	__u16 port; /* host byte order */
	__u8 family;
	__u8 proto; /* IANA protocol number */
	/* The address words exactly as the socket gave them (user_ip4, or user_ip6[0..3]),
	 * read once at entry: the verifier wants every ctx access at a constant offset. */
	__u32 raw[4];
};

#endif
