// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * cgroup/connect4|6 and cgroup/sendmsg4|6 on the bottle's cgroup: every TCP connect (also
 * TCP Fast Open, which goes through the same pre_connect hook: net/ipv4/af_inet.c
 * __inet_stream_connect), every UDP connect and every unconnected UDP datagram is judged
 * here before the kernel acts on it. Returning CORK_BLOCK fails the call with EPERM.
 */
#include "cork_policy.h"
#include "cork_events.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * Is there a listener (TCP) or bound socket (UDP) for this loopback destination, and did
 * this bottle create it? Ownership is the bottle tag that cgroup/sock_create stored on the
 * socket; the host's and other bottles' sockets carry none in this bottle's map.
 */
static __always_inline int cork_loopback_owned(struct bpf_sock_addr *ctx,
					       const struct cork_dst *dst)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;
	__u32 size;

	if (dst->family == CORK_AF_INET) {
		__builtin_memcpy(&t.ipv4.daddr, dst->addr, 4);
		t.ipv4.dport = bpf_htons(dst->port);
		size = sizeof(t.ipv4);
	} else {
		__builtin_memcpy(t.ipv6.daddr, dst->addr, 16);
		t.ipv6.dport = bpf_htons(dst->port);
		size = sizeof(t.ipv6);
	}
	if (dst->proto == IPPROTO_TCP)
		sk = bpf_sk_lookup_tcp(ctx, &t, size, BPF_F_CURRENT_NETNS, 0);
	else
		sk = bpf_sk_lookup_udp(ctx, &t, size, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return 0;

	struct cork_sock_state *st = bpf_sk_storage_get(&cork_sock, sk, 0, 0);
	int owned = st && st->bottle_id == CORK_BOTTLE_ID && (st->flags & CORK_SOCK_OWNED);

	bpf_sk_release(sk);
	return owned;
}

static __always_inline struct cork_decision cork_judge(struct bpf_sock_addr *ctx,
						       const struct cork_dst *dst)
{
	struct cork_decision d = { CORK_VERDICT_ALLOW, 0, CORK_RULE_NONE };

	if (!cork_is_loopback(dst))
		return cork_judge_remote(dst);
	if (cork_loopback_owned(ctx, dst)) {
		d.reason = CORK_REASON_LOOPBACK_OWN;
	} else if (cork_host_port_allowed(dst->port)) {
		d.reason = CORK_REASON_LOOPBACK_HOST_PORT;
	} else {
		d.verdict = CORK_VERDICT_DENY;
		d.reason = CORK_REASON_LOOPBACK_FOREIGN;
	}
	return d;
}

/* Log an allow for unconnected UDP only the first time this socket sends to dst. */
static __always_inline int cork_first_send(struct bpf_sock_addr *ctx, const struct cork_dst *dst)
{
	struct cork_flow_key k = {};
	__u8 one = 1;

	k.cookie = bpf_get_socket_cookie(ctx);
	__builtin_memcpy(k.addr, dst->addr, 16);
	k.port = dst->port;
	k.family = dst->family;
	k.proto = dst->proto;
	return bpf_map_update_elem(&cork_flows, &k, &one, BPF_NOEXIST) == 0;
}

/* Remember what connect() was allowed to reach, so cgroup_skb lets the flow through even
 * after a learned address expires. */
static __always_inline void cork_mark_vetted(struct bpf_sock_addr *ctx, const struct cork_dst *dst)
{
	struct bpf_sock *sk = ctx->sk;
	struct cork_sock_state *st;

	if (!sk)
		return;
	st = bpf_sk_storage_get(&cork_sock, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return;
	st->bottle_id = CORK_BOTTLE_ID;
	st->flags |= CORK_SOCK_VETTED;
	__builtin_memcpy(st->conn_addr, dst->addr, 16);
	st->conn_port = dst->port;
	st->conn_family = dst->family;
}

static __always_inline int cork_sock_addr(struct bpf_sock_addr *ctx, struct cork_dst *dst,
					  __u8 hook, int is_connect)
{
	struct cork_decision d;
	struct cork_event *ev;

	if (ctx->protocol == IPPROTO_TCP)
		dst->proto = IPPROTO_TCP;
	else if (ctx->protocol == IPPROTO_UDP)
		dst->proto = IPPROTO_UDP;
	else
		return CORK_BLOCK; /* sock_create admits no other protocol */
	dst->port = bpf_ntohs((__u16)ctx->user_port);

	d = cork_judge(ctx, dst);
	if (d.verdict == CORK_VERDICT_ALLOW && is_connect)
		cork_mark_vetted(ctx, dst);
	if (d.verdict == CORK_VERDICT_ALLOW && !is_connect && !cork_first_send(ctx, dst))
		return CORK_PASS;

	ev = cork_event_start(hook, d.verdict, d.reason, d.rule_id);
	if (ev) {
		cork_event_task(ev);
		cork_event_dst(ev, dst);
		ev->sock_cookie = bpf_get_socket_cookie(ctx);
		ev->sock_type = ctx->type;
		bpf_ringbuf_submit(ev, 0);
	}
	return d.verdict == CORK_VERDICT_ALLOW ? CORK_PASS : CORK_BLOCK;
}

SEC("cgroup/connect4")
int cork_connect4(struct bpf_sock_addr *ctx)
{
	struct cork_dst dst = {};

	cork_dst_from_v4(&dst, ctx->user_ip4);
	return cork_sock_addr(ctx, &dst, CORK_HOOK_CONNECT4, 1);
}

SEC("cgroup/connect6")
int cork_connect6(struct bpf_sock_addr *ctx)
{
	struct cork_dst dst = {};

	cork_dst_from_v6(&dst, ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2],
			 ctx->user_ip6[3]);
	return cork_sock_addr(ctx, &dst, CORK_HOOK_CONNECT6, 1);
}

SEC("cgroup/sendmsg4")
int cork_sendmsg4(struct bpf_sock_addr *ctx)
{
	struct cork_dst dst = {};

	cork_dst_from_v4(&dst, ctx->user_ip4);
	return cork_sock_addr(ctx, &dst, CORK_HOOK_SENDMSG4, 0);
}

SEC("cgroup/sendmsg6")
int cork_sendmsg6(struct bpf_sock_addr *ctx)
{
	struct cork_dst dst = {};

	cork_dst_from_v6(&dst, ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2],
			 ctx->user_ip6[3]);
	return cork_sock_addr(ctx, &dst, CORK_HOOK_SENDMSG6, 0);
}
