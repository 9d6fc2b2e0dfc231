// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * cgroup/connect_unix and cgroup/sendmsg_unix on the bottle's cgroup (Linux 6.7+): every
 * connect() of a unix socket (stream, seqpacket, datagram) and every unix datagram sent
 * with an address is judged here before the kernel looks the name up. A name the manifest
 * lists in `[unix] allow` passes; cork's control socket never does; anything else is
 * refused (EPERM). What needs no address is not seen, and needs no judging: a socketpair,
 * a socket inherited already connected, a datagram to the connected peer.
 */
/* One set of these programs serves every cgroup bottle (see cork_maps.h). */
#define CORK_SHARED
#include "cork_unix.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Log an allowed datagram only the first time this socket sends to that name. */
static __always_inline int cork_unix_first_send(struct bpf_sock_addr *ctx, __u32 bottle_id,
						__u32 rule_id)
{
	void *flows = CORK_MAP(flows, bottle_id);
	struct cork_flow_key k = {};
	__u8 one = 1;

	if (!flows)
		return 1; /* logged every time rather than never */

	k.cookie = bpf_get_socket_cookie(ctx);
	k.port = (__u16)rule_id; /* the name, by its unix.allow index (< 255 names) */
	k.family = CORK_AF_UNIX;
	return bpf_map_update_elem(flows, &k, &one, BPF_NOEXIST) == 0;
}

static __always_inline int cork_unix(struct bpf_sock_addr *ctx, __u8 hook)
{
	const struct cork_bottle_cfg *cfg = cork_cfg_current();
	struct cork_unix_key key = {};
	struct cork_unix_value *rule;
	struct cork_unix_event *ev;
	__u8 verdict = CORK_VERDICT_DENY, reason = CORK_REASON_DEFAULT_DENY;
	__u32 rule_id = CORK_RULE_NONE;

	if (!cfg)
		return CORK_BLOCK; /* not a bottle cork configured: fail closed */
	if (cork_unix_name(ctx, &key) == 0) {
		int slot = cork_policy_slot(cfg->bottle_id);
		void *names = slot == 1 ? CORK_MAP(unixname_1, cfg->bottle_id) :
					  CORK_MAP(unix_names, cfg->bottle_id);

		rule = slot >= 0 && names ? bpf_map_lookup_elem(names, &key) : 0;
		if (rule && rule->action == CORK_ACTION_ALLOW) {
			verdict = CORK_VERDICT_ALLOW;
			reason = CORK_REASON_UNIX_ALLOW;
			rule_id = rule->rule_id;
		} else if (rule) {
			reason = CORK_REASON_CONTROL_SOCKET;
		}
	} else {
		/* Unreadable: judged as no name at all (denied), and reported without one. */
		__builtin_memset(&key, 0, sizeof(key));
	}
	if (verdict == CORK_VERDICT_ALLOW && hook == CORK_HOOK_SENDMSG_UNIX &&
	    !cork_unix_first_send(ctx, cfg->bottle_id, rule_id))
		return CORK_PASS;

	void *ring = CORK_MAP(events, cfg->bottle_id);

	ev = ring ? bpf_ringbuf_reserve(ring, sizeof(*ev), 0) : 0;
	if (ev) {
		__builtin_memset(ev, 0, sizeof(*ev));
		cork_event_head(&ev->head, cfg->bottle_id, hook, verdict, reason, rule_id);
		cork_event_task(&ev->head);
		ev->head.family = CORK_AF_UNIX;
		ev->head.sock_cookie = bpf_get_socket_cookie(ctx);
		ev->head.sock_type = ctx->type;
		__builtin_memcpy(&ev->name, &key, sizeof(key));
		/* The common record is first: the reservation starts with it. */
		cork_event_submit(&ev->head);
	} else {
		cork_count_lost(cfg->bottle_id);
	}
	return verdict == CORK_VERDICT_ALLOW ? CORK_PASS : CORK_BLOCK;
}

SEC("cgroup/connect_unix")
int cork_connect_unix(struct bpf_sock_addr *ctx)
{
	return cork_unix(ctx, CORK_HOOK_CONNECT_UNIX);
}

SEC("cgroup/sendmsg_unix")
int cork_sendmsg_unix(struct bpf_sock_addr *ctx)
{
	return cork_unix(ctx, CORK_HOOK_SENDMSG_UNIX);
}
