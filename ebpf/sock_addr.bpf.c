// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * cgroup/connect4|6 and cgroup/sendmsg4|6 on the bottle's cgroup: every TCP connect (also
 * TCP Fast Open, which goes through the same pre_connect hook: net/ipv4/af_inet.c
 * __inet_stream_connect), every UDP connect and every unconnected UDP datagram is judged
 * here before the kernel acts on it. Returning CORK_BLOCK fails the call with EPERM.
 */
/* One set of these programs serves every cgroup bottle (see cork_maps.h). */
#define CORK_SHARED
#include "cork_policy.h"
#include "cork_events.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * Is there a listener (TCP) or bound socket (UDP) for this loopback destination, and did
 * this bottle create it? Ownership is the bottle tag that cgroup/sock_create stored on the
 * socket; the host's and other bottles' sockets carry none in this bottle's map.
 */
static __always_inline int cork_loopback_owned(struct bpf_sock_addr *ctx, __u32 bottle_id,
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
	int owned = st && st->bottle_id == bottle_id && (st->flags & CORK_SOCK_OWNED);

	bpf_sk_release(sk);
	return owned;
}

static __always_inline struct cork_decision cork_judge(struct bpf_sock_addr *ctx, __u32 bottle_id,
						       const struct cork_dst *dst)
{
	struct cork_decision d = { CORK_VERDICT_ALLOW, 0, CORK_RULE_NONE, 0 };

	if (!cork_is_loopback(dst))
		return cork_judge_remote(bottle_id, dst);
	if (cork_loopback_owned(ctx, bottle_id, dst)) {
		d.reason = CORK_REASON_LOOPBACK_OWN;
	} else if (cork_host_port_allowed(bottle_id, dst->port)) {
		d.reason = CORK_REASON_LOOPBACK_HOST_PORT;
	} else {
		d.verdict = CORK_VERDICT_DENY;
		d.reason = CORK_REASON_LOOPBACK_FOREIGN;
	}
	return d;
}

/* Makes a socket's state this bottle's. The state is one per socket for all bottles
 * (cork_maps.h): what another bottle recorded on a socket that reached this one (passed
 * over a unix socket) is not this bottle's, and goes, as if each bottle had its own. */
static __always_inline void cork_sock_claim(struct cork_sock_state *st, __u32 bottle_id)
{
	if (st->bottle_id != bottle_id) {
		__builtin_memset(st, 0, sizeof(*st));
		st->bottle_id = bottle_id;
	}
}

/* Log an allow for unconnected UDP only the first time this socket sends to dst. */
static __always_inline int cork_first_send(struct bpf_sock_addr *ctx, __u32 bottle_id,
					   const struct cork_dst *dst)
{
	void *flows = CORK_MAP(flows, bottle_id);
	struct cork_flow_key k = {};
	__u8 one = 1;

	if (!flows)
		return 1; /* logged every time rather than never */

	k.cookie = bpf_get_socket_cookie(ctx);
	__builtin_memcpy(k.addr, dst->addr, 16);
	k.port = dst->port;
	k.family = dst->family;
	k.proto = dst->proto;
	return bpf_map_update_elem(flows, &k, &one, BPF_NOEXIST) == 0;
}

/* Could this TCP socket have a state? One it was given when it bound (post_bind, in
 * sock_create.bpf.c) still holds its address or port; what else has one (a listener, an
 * accepted connection) does not connect. */
static __always_inline int cork_sk_bound(const struct bpf_sock *sk)
{
	if (sk->src_port)
		return 1;
	if (sk->family == CORK_AF_INET)
		return sk->src_ip4 != 0;
	return (sk->src_ip6[0] | sk->src_ip6[1] | sk->src_ip6[2] | sk->src_ip6[3]) != 0;
}

/* Remember what connect() was allowed to reach, so cgroup_skb lets the flow through even
 * after a learned address expires. A TCP socket without a state gets none: cgroup_skb
 * trusts such a socket's packets to the peer it is connected to, since only this hook
 * can have connected it (skb.bpf.c), and the allocation was most of a connect's cost. */
static __always_inline void cork_mark_vetted(struct bpf_sock_addr *ctx, __u32 bottle_id,
					     const struct cork_dst *dst)
{
	struct bpf_sock *sk = ctx->sk;
	struct cork_sock_state *st;

	if (!sk)
		return;
	/* An unbound TCP socket going off the host (the ordinary connect) has no state to
	 * mark, and asking costs a helper call (~20 ns): not asked. One that has a state all
	 * the same (it connected before, e.g. a failed redirect) keeps the old one, and
	 * cgroup_skb judges its packets by the policy instead: stricter, never looser. To
	 * loopback it is asked, as cgroup_skb's loopback rule reads the state. */
	if (dst->proto == IPPROTO_TCP && !cork_is_loopback(dst) && !cork_sk_bound(sk))
		return;
	st = bpf_sk_storage_get(&cork_sock, sk, 0,
				dst->proto == IPPROTO_UDP ? BPF_SK_STORAGE_GET_F_CREATE : 0);
	if (!st)
		return;
	cork_sock_claim(st, bottle_id);
	st->flags |= CORK_SOCK_VETTED;
	__builtin_memcpy(st->conn_addr, dst->addr, 16);
	st->conn_port = dst->port;
	st->conn_family = dst->family;
}

/* Set the IPv6 address of a sock_addr context, word by word (network order). */
static __always_inline void cork_ctx_set_ip6(struct bpf_sock_addr *ctx, __u32 w0, __u32 w1,
					     __u32 w2, __u32 w3)
{
	CORK_CTX_STORE32(ctx, user_ip6[0], w0);
	CORK_CTX_STORE32(ctx, user_ip6[1], w1);
	CORK_CTX_STORE32(ctx, user_ip6[2], w2);
	CORK_CTX_STORE32(ctx, user_ip6[3], w3);
}

/*
 * Rewrite the destination to one of the agent's loopback listeners (the DNS proxy or the
 * inspecting proxy) at `port`, keeping the address family the socket used: 127.0.0.1 for
 * IPv4, ::1 for IPv6, ::ffff:127.0.0.1 for an IPv4-mapped destination on an IPv6 socket.
 * A connect()ed socket is marked vetted for that listener so cgroup_skb lets it talk.
 */
static __always_inline void cork_rewrite_to_agent(struct bpf_sock_addr *ctx,
						  struct cork_sock_state *st,
						  const struct cork_dst *dst, int is_v6,
						  int is_connect, __u16 port)
{
	CORK_CTX_STORE32(ctx, user_port, bpf_htons(port));
	if (!is_v6) {
		CORK_CTX_STORE32(ctx, user_ip4, bpf_htonl(0x7f000001));
	} else if (dst->family == CORK_AF_INET) {
		cork_ctx_set_ip6(ctx, 0, 0, bpf_htonl(0xffff), bpf_htonl(0x7f000001));
	} else {
		cork_ctx_set_ip6(ctx, 0, 0, 0, bpf_htonl(1));
	}
	if (is_connect && st) {
		struct cork_dst agent = {};

		agent.family = dst->family;
		agent.port = port;
		if (dst->family == CORK_AF_INET) {
			__u32 lo = bpf_htonl(0x7f000001);

			__builtin_memcpy(agent.addr, &lo, 4);
		} else {
			agent.addr[15] = 1;
		}
		st->flags |= CORK_SOCK_VETTED;
		__builtin_memcpy(st->conn_addr, agent.addr, 16);
		st->conn_port = agent.port;
		st->conn_family = agent.family;
	}
}

/*
 * DNS (port 53, UDP or TCP, to any address) goes to the bottle's own DNS proxy instead:
 * remember where the bottle meant to send it (recvmsg shows replies as coming from
 * there), then rewrite the destination to the proxy on loopback.
 */
static __always_inline void cork_redirect_dns(struct bpf_sock_addr *ctx,
					      const struct cork_bottle_cfg *cfg,
					      struct cork_dst *dst, int is_v6, int is_connect)
{
	struct cork_sock_state *st = 0;
	struct bpf_sock *sk = ctx->sk;

	if (sk)
		st = bpf_sk_storage_get(&cork_sock, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (st) {
		cork_sock_claim(st, cfg->bottle_id);
		st->dns_port = 53;
		if (is_v6) {
			__builtin_memcpy(st->dns_addr, dst->raw, 16);
			st->dns_family = CORK_AF_INET6;
		} else {
			__builtin_memcpy(st->dns_addr, dst->raw, 4);
			st->dns_family = CORK_AF_INET;
		}
	}
	cork_rewrite_to_agent(ctx, st, dst, is_v6, is_connect, cfg->dns_port);
}

/*
 * A TCP connect() the policy sends through the inspecting proxy: record the destination
 * the bottle dialled (for sock_ops to publish once the source port exists, and for
 * getpeername to show), then rewrite it to the proxy. Without socket storage or without a
 * proxy the connect is refused: the flow must not go direct.
 */
static __always_inline int cork_redirect_proxy(struct bpf_sock_addr *ctx,
					       const struct cork_bottle_cfg *cfg,
					       struct cork_dst *dst, int is_v6, __u32 rule_id)
{
	struct cork_sock_state *st = 0;
	struct bpf_sock *sk = ctx->sk;

	if (!cfg->proxy_port)
		return 0;
	if (sk)
		st = bpf_sk_storage_get(&cork_sock, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return 0;
	cork_sock_claim(st, cfg->bottle_id);
	__builtin_memcpy(st->redir_addr, dst->addr, 16);
	st->redir_port = dst->port;
	st->redir_family = dst->family;
	st->redir_rule = rule_id;
	cork_rewrite_to_agent(ctx, st, dst, is_v6, 1, cfg->proxy_port);
	return 1;
}

static __always_inline int cork_sock_addr(struct bpf_sock_addr *ctx, struct cork_dst *dst,
					  __u8 hook, int is_connect)
{
	const struct cork_bottle_cfg *cfg = cork_cfg_current();
	struct cork_allow_flow flow = {};
	struct cork_decision d;
	struct cork_event *ev;
	int is_v6 = hook == CORK_HOOK_CONNECT6 || hook == CORK_HOOK_SENDMSG6;
	void *allows = 0;
	__u64 gen = 0;

	if (!cfg)
		return CORK_BLOCK; /* not a bottle cork configured: fail closed */
	if (ctx->protocol == IPPROTO_TCP)
		dst->proto = IPPROTO_TCP;
	else if (ctx->protocol == IPPROTO_UDP)
		dst->proto = IPPROTO_UDP;
	else
		return CORK_BLOCK; /* sock_create admits no other protocol */
	dst->port = bpf_ntohs((__u16)ctx->user_port);

	if (cfg->dns_port && dst->port == 53) {
		d.verdict = CORK_VERDICT_ALLOW;
		d.reason = CORK_REASON_DNS_REDIRECT;
		d.rule_id = CORK_RULE_NONE;
		cork_redirect_dns(ctx, cfg, dst, is_v6, is_connect);
	} else {
		/* A connect off the host: its flow's slot may keep the verdict (cork_events.h),
		 * asked before the policy. The generation is read first: a verdict reached
		 * after it is kept under it or under an older one, never a newer. */
		if (is_connect && !cork_is_loopback(dst)) {
			allows = CORK_MAP(allows, cfg->bottle_id);
			gen = cork_policy_gen(cfg->bottle_id);
		}
		if (allows && gen) {
			cork_allow_flow_init(&flow, hook, dst, ctx->type);
			if (cork_allow_hit(allows, &flow, gen)) {
				cork_mark_vetted(ctx, cfg->bottle_id, dst);
				return CORK_PASS;
			}
		}
		d = cork_judge(ctx, cfg->bottle_id, dst);
		if (d.verdict == CORK_VERDICT_ALLOW && d.redirect) {
			/* Only TCP connect() gets here: UDP to a redirected port is refused by
			 * the scan itself. */
			if (!is_connect || !cork_redirect_proxy(ctx, cfg, dst, is_v6, d.rule_id)) {
				d.verdict = CORK_VERDICT_DENY;
				d.redirect = 0;
			}
		} else if (d.verdict == CORK_VERDICT_ALLOW && is_connect) {
			cork_mark_vetted(ctx, cfg->bottle_id, dst);
		}
	}
	if (d.verdict == CORK_VERDICT_ALLOW && !is_connect && !cork_first_send(ctx, cfg->bottle_id, dst))
		return CORK_PASS;
	if (d.verdict == CORK_VERDICT_ALLOW && d.reason == CORK_REASON_ALLOW_RULE && allows && gen &&
	    cork_allow_counted(allows, &flow, gen, d.rule_id, d.valid_until_ns))
		return CORK_PASS;

	ev = cork_event_start(cfg->bottle_id, hook, d.verdict, d.reason, d.rule_id);
	if (ev) {
		cork_event_task(ev);
		cork_event_dst(ev, dst);
		ev->sock_cookie = bpf_get_socket_cookie(ctx);
		ev->sock_type = ctx->type;
		cork_event_submit(ev);
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

/*
 * cgroup/recvmsg4|6 (and getpeername4|6 below): a reply from the DNS proxy is shown as
 * coming from the server the bottle addressed (resolvers drop answers from anywhere
 * else). Must return 1.
 */
static __always_inline void cork_restore_dns_source(struct bpf_sock_addr *ctx,
						    const struct cork_bottle_cfg *cfg, int is_v6)
{
	struct cork_sock_state *st;
	struct bpf_sock *sk = ctx->sk;

	if (!cfg->dns_port || !sk ||
	    CORK_CTX_LOAD32(ctx, user_port) != bpf_htons(cfg->dns_port))
		return;
	st = bpf_sk_storage_get(&cork_sock, sk, 0, 0);
	if (!st || !st->dns_family)
		return;
	if (!is_v6 && st->dns_family == CORK_AF_INET &&
	    CORK_CTX_LOAD32(ctx, user_ip4) == bpf_htonl(0x7f000001)) {
		__u32 a;

		__builtin_memcpy(&a, st->dns_addr, 4);
		CORK_CTX_STORE32(ctx, user_ip4, a);
		CORK_CTX_STORE32(ctx, user_port, bpf_htons(st->dns_port));
	} else if (is_v6 && st->dns_family == CORK_AF_INET6) {
		__u32 w[4];

		__builtin_memcpy(w, st->dns_addr, 16);
		cork_ctx_set_ip6(ctx, w[0], w[1], w[2], w[3]);
		CORK_CTX_STORE32(ctx, user_port, bpf_htons(st->dns_port));
	}
}

SEC("cgroup/recvmsg4")
int cork_recvmsg4(struct bpf_sock_addr *ctx)
{
	const struct cork_bottle_cfg *cfg = cork_cfg_current();

	if (cfg)
		cork_restore_dns_source(ctx, cfg, 0);
	return 1;
}

SEC("cgroup/recvmsg6")
int cork_recvmsg6(struct bpf_sock_addr *ctx)
{
	const struct cork_bottle_cfg *cfg = cork_cfg_current();

	if (cfg)
		cork_restore_dns_source(ctx, cfg, 1);
	return 1;
}

/* getpeername() on a connection redirected to the inspecting proxy names the server the
 * bottle dialled, as the socket's family spells it. */
static __always_inline void cork_restore_proxy_peer(struct bpf_sock_addr *ctx,
						    const struct cork_bottle_cfg *cfg, int is_v6)
{
	struct cork_sock_state *st;
	struct bpf_sock *sk = ctx->sk;

	if (!cfg->proxy_port || !sk ||
	    CORK_CTX_LOAD32(ctx, user_port) != bpf_htons(cfg->proxy_port))
		return;
	st = bpf_sk_storage_get(&cork_sock, sk, 0, 0);
	if (!st || !st->redir_port)
		return;
	__u32 w[4] = {};

	__builtin_memcpy(w, st->redir_addr, 16);
	if (!is_v6) {
		if (st->redir_family != CORK_AF_INET)
			return;
		CORK_CTX_STORE32(ctx, user_ip4, w[0]);
	} else if (st->redir_family == CORK_AF_INET) {
		cork_ctx_set_ip6(ctx, 0, 0, bpf_htonl(0xffff), w[0]);
	} else {
		cork_ctx_set_ip6(ctx, w[0], w[1], w[2], w[3]);
	}
	CORK_CTX_STORE32(ctx, user_port, bpf_htons(st->redir_port));
}

/* getpeername() on a redirected TCP connection names the server the bottle dialled. */
SEC("cgroup/getpeername4")
int cork_getpeername4(struct bpf_sock_addr *ctx)
{
	const struct cork_bottle_cfg *cfg = cork_cfg_current();

	if (cfg) {
		cork_restore_dns_source(ctx, cfg, 0);
		cork_restore_proxy_peer(ctx, cfg, 0);
	}
	return 1;
}

SEC("cgroup/getpeername6")
int cork_getpeername6(struct bpf_sock_addr *ctx)
{
	const struct cork_bottle_cfg *cfg = cork_cfg_current();

	if (cfg) {
		cork_restore_dns_source(ctx, cfg, 1);
		cork_restore_proxy_peer(ctx, cfg, 1);
	}
	return 1;
}
