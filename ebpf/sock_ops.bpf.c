// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * sockops on the bottle's cgroup: when a TCP connect() that cgroup/connect4|6 redirected to
 * the inspecting proxy is about to send its SYN, the socket's source address and port
 * exist (they do not yet in the connect hook). Publish source → original destination in
 * cork_redirects, where the proxy looks up the peer of each connection it accepts. The
 * entry is written by this bottle's kernel program only, so the proxy learns bottle and
 * destination from kernel state, never from anything the bottle sends.
 */
/*
 * It also keeps the tags loopback scoping and cgroup_skb rely on: a TCP socket that
 * listens without having bound (the port chosen by listen() itself, which no post_bind
 * hook sees) is tagged as its bottle's here, and a connection accepted from a listener
 * that somehow has no tag (its tag could not be allocated) gets one that names no
 * bottle, so cgroup_skb judges its packets by the policy instead of trusting it like a
 * socket whose connect() was judged.
 */
/* One set of these programs serves every cgroup bottle (see cork_maps.h). */
#define CORK_SHARED
#include "cork_policy.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* listen(2) runs in the listening process: its cgroup is the bottle's. */
static __always_inline void cork_tag_listener(struct bpf_sock *sk)
{
	const struct cork_bottle_cfg *cfg = cork_cfg_current();
	struct cork_sock_state *st;

	if (!cfg)
		return;
	st = bpf_sk_storage_get(&cork_sock, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return; /* its own connects fail closed; what it accepts is judged (above) */
	if (st->bottle_id != cfg->bottle_id) {
		__builtin_memset(st, 0, sizeof(*st));
		st->bottle_id = cfg->bottle_id;
	}
	st->flags |= CORK_SOCK_OWNED;
}

/* Is the connection's peer on loopback (127/8, ::1, ::ffff:127/104)? */
static __always_inline int cork_remote_loopback(const struct bpf_sock_ops *skops)
{
	if (skops->family == CORK_AF_INET)
		return (bpf_ntohl(skops->remote_ip4) >> 24) == 127;
	__u32 w0 = skops->remote_ip6[0], w1 = skops->remote_ip6[1];
	__u32 w2 = skops->remote_ip6[2], w3 = skops->remote_ip6[3];

	if (w0 || w1)
		return 0;
	if (w2 == bpf_htonl(0xffff))
		return (bpf_ntohl(w3) >> 24) == 127;
	return w2 == 0 && w3 == bpf_htonl(1);
}

SEC("sockops")
int cork_sock_ops(struct bpf_sock_ops *skops)
{
	struct cork_redirect_key k = {};
	struct cork_redirect_value v = {};
	struct cork_sock_state *st;
	struct bpf_sock *sk;

	/* The op first: most runs of a connect are ops this program ignores. */
	__u32 op = skops->op;

	if (op != BPF_SOCK_OPS_TCP_LISTEN_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB &&
	    op != BPF_SOCK_OPS_TCP_CONNECT_CB)
		return 1;
	sk = skops->sk;
	if (!sk)
		return 1;
	if (op == BPF_SOCK_OPS_TCP_LISTEN_CB) {
		cork_tag_listener(sk);
		return 1;
	}
	if (op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) {
		st = bpf_sk_storage_get(&cork_sock, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (st && !st->bottle_id)
			st->bottle_id = CORK_BOTTLE_NONE;
		return 1;
	}
	/* A connect redirected to the inspecting proxy goes to loopback (connect4|6 rewrote
	 * it to 127.0.0.1, ::1 or ::ffff:127.0.0.1): any other has nothing to publish, and
	 * its state is not asked for (a helper call, ~20 ns a connect). */
	if (!cork_remote_loopback(skops))
		return 1;
	st = bpf_sk_storage_get(&cork_sock, sk, 0, 0);
	/* The state is written by cork's connect hook of the bottle the socket connected
	 * from (which set redir_port): a socket no bottle tagged has none. */
	if (!st || !st->bottle_id || !st->redir_port)
		return 1;

	if (skops->family == CORK_AF_INET) {
		__u32 a = skops->local_ip4;

		k.family = CORK_AF_INET;
		__builtin_memcpy(k.addr, &a, 4);
	} else {
		__u32 w0 = skops->local_ip6[0], w1 = skops->local_ip6[1];
		__u32 w2 = skops->local_ip6[2], w3 = skops->local_ip6[3];

		if (w0 == 0 && w1 == 0 && w2 == bpf_htonl(0xffff)) {
			/* an IPv6 socket on an IPv4-mapped path: the proxy sees an IPv4 peer */
			k.family = CORK_AF_INET;
			__builtin_memcpy(k.addr, &w3, 4);
		} else {
			k.family = CORK_AF_INET6;
			__builtin_memcpy(k.addr, &w0, 4);
			__builtin_memcpy(k.addr + 4, &w1, 4);
			__builtin_memcpy(k.addr + 8, &w2, 4);
			__builtin_memcpy(k.addr + 12, &w3, 4);
		}
	}
	k.port = (__u16)skops->local_port; /* host byte order in bpf_sock_ops */

	__builtin_memcpy(v.addr, st->redir_addr, 16);
	v.port = st->redir_port;
	v.family = st->redir_family;
	v.rule_id = st->redir_rule;
	v.sock_cookie = bpf_get_socket_cookie(skops);
	v.pid = bpf_get_current_pid_tgid() >> 32;
	/* The bottle's own table, which only its proxy reads. */
	void *redirects = CORK_MAP(redirects, st->bottle_id);

	if (redirects)
		bpf_map_update_elem(redirects, &k, &v, BPF_ANY);
	return 1;
}
