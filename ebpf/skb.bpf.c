// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * cgroup_skb/egress on the bottle's cgroup: the last line of defence. The socket hooks
 * already judged connect() and sendmsg(); this sees every packet a bottle socket emits
 * (loopback included) and drops, with an audit event, any that the policy would not have
 * allowed: packets from sockets created before enforcement, ICMP and other protocols, and
 * replies of the bottle's listeners to peers outside its allowlist. There is no task
 * context here, so identity is the socket's cgroup and cookie.
 */
/* One set of these programs serves every cgroup bottle (see cork_maps.h). */
#define CORK_SHARED
#include "cork_policy.h"
#include "cork_events.h"
#include "cork_packet.h"
#include "cork_kern.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline int cork_same_dst(const struct cork_sock_state *st,
					 const struct cork_dst *dst)
{
	if (st->conn_family != dst->family || st->conn_port != dst->port)
		return 0;
	for (int i = 0; i < 16; i++)
		if (st->conn_addr[i] != dst->addr[i])
			return 0;
	return 1;
}

/*
 * Is this a packet of a TCP socket whose peer came from connect()? Asked only of a socket
 * with no state at all (`sk` its socket as the hook has it: a full socket, or a request
 * or time-wait socket, for which the state lookup finds nothing either). Every UDP socket
 * of a bottle has a state from creation (sock_create.bpf.c refuses one it cannot tag), and
 * a TCP socket gets one when it binds, listens or is accepted (sock_create.bpf.c,
 * sock_ops.bpf.c; an accepted one inherits its listener's, or gets one naming no bottle):
 * so a stateless socket is a TCP socket that at most connected, and connect() is what
 * cgroup/connect4|6 judged and allowed, the socket having been created in this cgroup
 * after the programs were attached. TCP sends only to its peer, so the packet passes
 * unparsed, and the flow is kept as a vetted one is (an address expiring or a policy
 * update does not cut it). A listener sends nothing itself; a request socket (a
 * listener's handshake) and a time-wait socket are judged. A reset on close (SO_LINGER 0)
 * leaves in state CLOSE, to the peer, whose port the socket still holds. This is the path
 * of every packet of an ordinary allowed connection: no parse, no bottle or policy lookup,
 * and no helper call when the socket has no local storage of any map (read straight from
 * the kernel's socket, cork_kern.h; each helper call costs here: the kernel returns
 * through a mitigation thunk).
 */
static __always_inline int cork_connected_stateless(const struct bpf_sock *sk)
{
	__u32 state = sk->state;

	/* No peer port, no peer (BPF_PROG_TEST_RUN's stand-in socket has none either). */
	if (!sk->dst_port)
		return 0;
	return state != BPF_TCP_LISTEN && state != BPF_TCP_NEW_SYN_RECV &&
	       state != BPF_TCP_TIME_WAIT;
}

/* The verdict on any other packet; `any` is its socket's state whichever bottle that
 * names (or 0). */
static __always_inline struct cork_decision cork_judge_packet(const struct cork_bottle_cfg *cfg,
							      const struct cork_pkt *pkt,
							      struct cork_sock_state *any)
{
	struct cork_decision pass = { CORK_VERDICT_ALLOW, CORK_REASON_ALLOW_RULE, CORK_RULE_NONE };
	struct cork_decision drop = { CORK_VERDICT_DENY, CORK_REASON_UNVETTED_PACKET,
				      CORK_RULE_NONE };
	struct cork_sock_state *st = any && any->bottle_id == cfg->bottle_id ? any : 0;

	if (pkt->l4 != IPPROTO_TCP && pkt->l4 != IPPROTO_UDP)
		return drop;
	/* A connect() this bottle was allowed: keep the flow (expiry does not cut it). */
	if (st && (st->flags & CORK_SOCK_VETTED) && cork_same_dst(st, &pkt->dst))
		return pass;
	if (cork_is_loopback(&pkt->dst)) {
		/* Bottle sockets only reach loopback through the vetted socket hooks (or answer
		 * a peer that connected to them); unknown sockets only the host ports. */
		if (st && (st->flags & CORK_SOCK_OWNED))
			return pass;
		if (cork_host_port_allowed(cfg->bottle_id, pkt->dst.port))
			return pass;
		return drop;
	}
	struct cork_decision d = cork_judge_remote(cfg->bottle_id, &pkt->dst);

	/* A flow the policy sends through the proxy never goes direct: only a connect()
	 * rewritten to the proxy (vetted above) carries it. */
	if (d.verdict == CORK_VERDICT_ALLOW && !d.redirect)
		return pass;
	drop.rule_id = d.rule_id;
	return drop;
}

SEC("cgroup_skb/egress")
int cork_skb_egress(struct __sk_buff *skb)
{
	const struct cork_bottle_cfg *cfg;
	struct cork_sock_state *any = 0;
	struct bpf_sock *sk = skb->sk;
	struct cork_pkt pkt = {};
	struct cork_decision d;
	struct cork_event *ev;

	if (sk) {
		int connected = cork_connected_stateless(sk);

		/* A connected full socket with no storage of any map has none of cork_sock:
		 * the verdict the lookup below would reach, without the helper call. */
		if (connected && cork_full_sk_has_no_storage(skb))
			return CORK_PASS;
		any = bpf_sk_storage_get(&cork_sock, sk, 0, 0);
		if (!any && connected)
			return CORK_PASS;
	}

	if (!cork_parse(skb, 0, &pkt))
		return CORK_PASS; /* not IP (e.g. ARP is never in a socket's cgroup path) */
	/* The socket's cgroup: the one whose programs run for this packet. */
	cfg = CORK_CFG_OF(bpf_skb_cgroup_id(skb));
	if (!cfg)
		return CORK_BLOCK; /* not a bottle cork configured: fail closed */
	d = cork_judge_packet(cfg, &pkt, any);
	if (d.verdict == CORK_VERDICT_ALLOW)
		return CORK_PASS;

	ev = cork_event_start(cfg->bottle_id, CORK_HOOK_SKB_EGRESS, d.verdict, d.reason, d.rule_id);
	if (ev) {
		ev->cgroup_id = bpf_skb_cgroup_id(skb);
		ev->sock_cookie = bpf_get_socket_cookie(skb);
		cork_event_dst(ev, &pkt.dst);
		__builtin_memcpy(ev->src, pkt.src, 16);
		ev->sport = pkt.sport;
		cork_event_submit(ev);
	}
	return CORK_BLOCK;
}

/*
 * cgroup_skb/egress on a bottle that has ended: attached at teardown, after the bottle's
 * processes are dead and before its own programs are detached, and left on the removed
 * cgroup (the kernel drops it when the last socket of the cgroup is freed). A socket can
 * outlive its process (an orphan still sending its queue, retransmitting, closing): its
 * packets must not leave unjudged once the bottle's programs, settings and policy are
 * gone. What it lets through is what cork_skb_egress let through whatever the policy:
 * the peer of a TCP socket that connect() reached while the bottle lived, and the
 * destination a vetted socket was allowed; a time-wait socket's answers (it holds no
 * data). Everything else is dropped, unaudited: the bottle's event ring is gone with it
 * (the refused data was already audited while the bottle lived; that is why it was still
 * queued).
 */
SEC("cgroup_skb/egress")
int cork_skb_ended(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	struct cork_sock_state *st;
	struct cork_pkt pkt = {};

	if (!sk)
		return CORK_BLOCK;
	st = bpf_sk_storage_get(&cork_sock, sk, 0, 0);
	if (!st) {
		/* A socket still connecting was connected after the bottle ended: no process of
		 * the bottle is left to have done it (a killed process's connecting socket is
		 * destroyed), so another one, handed the socket, did — unjudged, since the
		 * bottle's connect hooks are gone. Its SYN goes nowhere. */
		if (sk->state == BPF_TCP_SYN_SENT)
			return CORK_BLOCK;
		if (cork_connected_stateless(sk) || sk->state == BPF_TCP_TIME_WAIT)
			return CORK_PASS;
		return CORK_BLOCK;
	}
	if (!cork_parse(skb, 0, &pkt))
		return CORK_PASS; /* not IP, as above */
	if ((st->flags & CORK_SOCK_VETTED) && cork_same_dst(st, &pkt.dst))
		return CORK_PASS;
	return CORK_BLOCK;
}
