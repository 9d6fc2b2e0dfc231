// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * cgroup/sock_create on the bottle's cgroup: runs for every AF_INET/AF_INET6 socket a
 * bottled process creates (net/ipv4/af_inet.c inet_create, net/ipv6/af_inet6.c
 * inet6_create). Raw sockets, ICMP "ping" sockets and any inet protocol other than TCP and
 * UDP are refused (EPERM): the sock_addr hooks only understand TCP and UDP. Every admitted
 * UDP socket is tagged as this bottle's at once; a TCP socket when it binds (post_bind
 * below) or listens (sock_ops), which is how loopback scoping recognises the bottle's own
 * listeners. A TCP socket that only connects is never tagged: the socket state costs an
 * allocation (~0.7 us, most of what cork added to a connect), and cgroup_skb trusts an
 * untagged TCP socket's packets only to the peer its connect() was judged for (skb.bpf.c).
 * (AF_PACKET never reaches this hook: cork run drops CAP_NET_RAW instead.)
 */
/* One set of these programs serves every cgroup bottle (see cork_maps.h). */
#define CORK_SHARED
#include "cork_events.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline __u8 cork_refusal(const struct bpf_sock *sk)
{
	if (sk->type == CORK_SOCK_RAW)
		return CORK_REASON_RAW_SOCKET;
	if (sk->protocol == IPPROTO_ICMP || sk->protocol == IPPROTO_ICMPV6)
		return CORK_REASON_ICMP_SOCKET;
	if (sk->type == CORK_SOCK_STREAM && sk->protocol == IPPROTO_TCP)
		return 0;
	if (sk->type == CORK_SOCK_DGRAM && sk->protocol == IPPROTO_UDP)
		return 0;
	return CORK_REASON_UNSUPPORTED_SOCKET;
}

SEC("cgroup/sock_create")
int cork_sock_create(struct bpf_sock *sk)
{
	const struct cork_bottle_cfg *cfg;
	__u8 reason = cork_refusal(sk);
	struct cork_sock_state *st;
	struct cork_event *ev;

	/* A TCP socket passes before the bottle is looked up (a helper call, ~20 ns a
	 * connect): nothing is written for it here, and everything it can do later (connect,
	 * bind, its packets) is refused by a hook that looks the bottle up itself when there
	 * is none. */
	if (!reason && sk->type == CORK_SOCK_STREAM)
		return CORK_PASS;
	cfg = cork_cfg_current();
	if (!cfg)
		return CORK_BLOCK; /* not a bottle cork configured: fail closed */
	if (!reason) {
		st = bpf_sk_storage_get(&cork_sock, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (!st)
			return CORK_BLOCK; /* untagged sockets would lose loopback scoping: fail closed */
		st->bottle_id = cfg->bottle_id;
		st->flags = CORK_SOCK_OWNED;
		return CORK_PASS;
	}
	ev = cork_event_start(cfg->bottle_id, CORK_HOOK_SOCK_CREATE, CORK_VERDICT_DENY, reason, CORK_RULE_NONE);
	if (ev) {
		cork_event_task(ev);
		ev->family = sk->family;
		ev->proto = sk->protocol <= 255 ? sk->protocol : 255; /* MPTCP is 262 */
		ev->sock_type = sk->type;
		cork_event_submit(ev);
	}
	return CORK_BLOCK;
}

/*
 * cgroup/post_bind4|6: a socket of the bottle bound an address (bind(), not a connect's
 * implicit source port). A TCP socket is tagged here, as UDP ones are at creation, before
 * it can listen: loopback scoping finds the bottle's listeners by the tag, and the sockets
 * a listener accepts inherit it (BPF_F_CLONE), which keeps cgroup_skb judging their
 * answers. Refused (EPERM, the bind undone) when the tag cannot be made: fail closed.
 */
static __always_inline int cork_tag_bound(struct bpf_sock *sk)
{
	const struct cork_bottle_cfg *cfg = cork_cfg_current();
	struct cork_sock_state *st;

	if (!cfg)
		return CORK_BLOCK;
	st = bpf_sk_storage_get(&cork_sock, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return CORK_BLOCK;
	if (st->bottle_id != cfg->bottle_id) {
		__builtin_memset(st, 0, sizeof(*st));
		st->bottle_id = cfg->bottle_id;
	}
	st->flags |= CORK_SOCK_OWNED;
	return CORK_PASS;
}

SEC("cgroup/post_bind4")
int cork_post_bind4(struct bpf_sock *sk)
{
	return cork_tag_bound(sk);
}

SEC("cgroup/post_bind6")
int cork_post_bind6(struct bpf_sock *sk)
{
	return cork_tag_bound(sk);
}
