/* SPDX-License-Identifier: Apache-2.0 */
/* Audit records on the ring buffer. A record that does not fit is counted in cork_lost. */
#ifndef CORK_EVENTS_H
#define CORK_EVENTS_H

#include "cork_maps.h"

static __always_inline void cork_count_lost(void)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&cork_lost, &zero);

	if (lost)
		*lost += 1; /* per-CPU slot: no other writer */
}

/* The fields every hook fills the same way, in a record already zeroed. */
static __always_inline void cork_event_head(struct cork_event *ev, __u8 hook, __u8 verdict,
					    __u8 reason, __u16 rule_id)
{
	ev->ts_boot_ns = bpf_ktime_get_boot_ns();
	ev->bottle_id = CORK_BOTTLE_ID;
	ev->hook = hook;
	ev->verdict = verdict;
	ev->reason = reason;
	ev->rule_id = rule_id;
}

/* Reserve a zeroed record with the fields every hook fills the same way. */
static __always_inline struct cork_event *cork_event_start(__u8 hook, __u8 verdict, __u8 reason,
							   __u16 rule_id)
{
	struct cork_event *ev = bpf_ringbuf_reserve(&cork_events, sizeof(*ev), 0);

	if (!ev) {
		cork_count_lost();
		return 0;
	}
	__builtin_memset(ev, 0, sizeof(*ev));
	cork_event_head(ev, hook, verdict, reason, rule_id);
	return ev;
}

/* Task identity, for hooks that run in process context (not cgroup_skb). */
static __always_inline void cork_event_task(struct cork_event *ev)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	ev->pid = pid_tgid >> 32;
	ev->tid = (__u32)pid_tgid;
	ev->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
}

static __always_inline void cork_event_dst(struct cork_event *ev, const struct cork_dst *dst)
{
	__builtin_memcpy(ev->dst, dst->addr, sizeof(ev->dst));
	ev->dport = dst->port;
	ev->family = dst->family;
	ev->proto = dst->proto;
}

#endif
