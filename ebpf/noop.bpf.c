// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The floor cork's programs are measured against (cargo xtask bench, the kernel
 * section): one program per hook a cgroup bottle uses, each doing nothing but let the
 * operation through. Attached to a cgroup of its own by the benchmark only, never by a
 * bottle: what a connect costs with these attached is what any cgroup BPF enforcement
 * costs before it decides anything.
 */
#include "cork_bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("cgroup/sock_create")
int noop_sock_create(struct bpf_sock *sk)
{
	return CORK_PASS;
}

SEC("cgroup/connect4")
int noop_connect4(struct bpf_sock_addr *ctx)
{
	return CORK_PASS;
}

SEC("cgroup/connect6")
int noop_connect6(struct bpf_sock_addr *ctx)
{
	return CORK_PASS;
}

SEC("cgroup_skb/egress")
int noop_skb_egress(struct __sk_buff *skb)
{
	return CORK_PASS;
}

SEC("sockops")
int noop_sock_ops(struct bpf_sock_ops *skops)
{
	return 1;
}
