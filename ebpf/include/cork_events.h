/* SPDX-License-Identifier: Apache-2.0 */
/* Audit records on the ring buffer (a record that does not fit is counted in cork_lost),
 * and the repeated allowed connects counted in cork_allows instead of recorded. */
#ifndef CORK_EVENTS_H
#define CORK_EVENTS_H

#include "cork_maps.h"

/* The programs submit without waking the reader, which finds records on its own short poll
 * timer (userspace/bpf/src/events.rs). A default submit wakes a reader that has caught up,
 * i.e. on every record when it keeps up, and the wake-up (an irq_work, a self-IPI: a VM
 * exit on a guest) ran inside the bottle's connect(): ~10 us, twenty times the program's
 * own work. Only a burst that fills the ring faster than the poll drains it needs a
 * wake-up: one each time the unread bytes cross a multiple of CORK_EVENTS_WAKE_BYTES, so
 * at most 8 per ring's worth however far the reader lags (waking on every record past a
 * threshold cost a lagging reader's bottle ~5 us per record). */
#define CORK_EVENTS_WAKE_BYTES (CORK_EVENTS_BYTES / 8)
/* What one record takes in the ring: the kernel's 8-byte header, the record rounded up to
 * 8 bytes (kernel/bpf/ringbuf.c, BPF_RINGBUF_HDR_SZ). */
#define CORK_EVENT_RING_BYTES (8 + ((sizeof(struct cork_event) + 7) / 8) * 8)

static __always_inline void cork_count_lost(__u32 bottle_id)
{
	__u32 zero = 0;
	void *map = CORK_MAP(lost, bottle_id);
	__u64 *lost = map ? bpf_map_lookup_elem(map, &zero) : 0;

	if (lost)
		*lost += 1; /* per-CPU slot: no other writer */
}

/* The fields every hook fills the same way, in a record already zeroed. */
static __always_inline void cork_event_head(struct cork_event *ev, __u32 bottle_id, __u8 hook,
					    __u8 verdict, __u8 reason, __u32 rule_id)
{
	ev->ts_boot_ns = bpf_ktime_get_boot_ns();
	ev->bottle_id = bottle_id;
	ev->hook = hook;
	ev->verdict = verdict;
	ev->reason = reason;
	ev->rule_id = rule_id;
}

/* Reserve a zeroed record with the fields every hook fills the same way. */
static __always_inline struct cork_event *cork_event_start(__u32 bottle_id, __u8 hook,
							   __u8 verdict, __u8 reason,
							   __u32 rule_id)
{
	void *ring = CORK_MAP(events, bottle_id);
	struct cork_event *ev = ring ? bpf_ringbuf_reserve(ring, sizeof(*ev), 0) : 0;

	if (!ev) {
		cork_count_lost(bottle_id);
		return 0;
	}
	__builtin_memset(ev, 0, sizeof(*ev));
	cork_event_head(ev, bottle_id, hook, verdict, reason, rule_id);
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

/* Commits a record from cork_event_start: every hook submits through here. */
static __always_inline void cork_event_submit(struct cork_event *ev)
{
	/* Counts this record too: the producer position moved when it was reserved. (The
	 * ring it was reserved in: the bottle's, found again.) */
	void *ring = CORK_MAP(events, ev->bottle_id);
	__u64 unread = ring ? bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) : 0;
	__u64 before = unread - CORK_EVENT_RING_BYTES;

	/* Records of other CPUs can move the count past a multiple unseen by both; the next
	 * multiple, or the reader's poll, catches up. */
	if (unread / CORK_EVENTS_WAKE_BYTES != before / CORK_EVENTS_WAKE_BYTES)
		bpf_ringbuf_submit(ev, BPF_RB_FORCE_WAKEUP);
	else
		bpf_ringbuf_submit(ev, BPF_RB_NO_WAKEUP);
}

static __always_inline void cork_event_dst(struct cork_event *ev, const struct cork_dst *dst)
{
	__builtin_memcpy(ev->dst, dst->addr, sizeof(ev->dst));
	ev->dport = dst->port;
	ev->family = dst->family;
	ev->proto = dst->proto;
}

/* The longest a jiffy lasts: HZ is at least 100 on the architectures cork runs on
 * (x86-64, arm64: kernel/Kconfig.hz). Were it longer, a window would only last longer
 * than CORK_ALLOW_WINDOW_NS, still well inside the reader's idle margin (counted.rs). */
#define CORK_MAX_JIFFY_NS 10000000ull

/* A jiffies value reached no later than `end_ns`, from `now_j` read at `now_ns`: each
 * jiffy lasts at most CORK_MAX_JIFFY_NS, and one is kept back for a late tick. 0 when no
 * whole jiffy fits. */
static __always_inline __u64 cork_jiffies_before(__u64 now_j, __u64 now_ns, __u64 end_ns)
{
	__u64 n = now_ns < end_ns ? (end_ns - now_ns) / CORK_MAX_JIFFY_NS : 0;

	return n > 1 ? now_j + n - 1 : 0;
}

/*
 * A connect the policy allowed outright (an allow rule, not the proxy, not loopback) that
 * repeats one already recorded in the last CORK_ALLOW_WINDOW_NS is counted in the bottle's
 * cork_allows instead of becoming a record: the agent writes one line per count it finds
 * there (userspace/bpf/src/counted.rs), so every allow is still a line or in a line's
 * `count`. A record costs a connect ~200 ns here (eight helper calls) and the agent a
 * decode and a line; a count is one lookup and one atomic add. Denies are never counted.
 * Whether the window is open is first asked of the jiffies (bpf_jiffies64, which the
 * verifier inlines: a load), and only when they cannot tell of the clock (a helper call,
 * ~30 ns): most counted connects of a busy flow read no clock. Either way a count lands
 * only before window_end_ns, which the agent's reader relies on.
 * Returns 1 when counted (no record), 0 when this connect is to be recorded.
 */
static __always_inline int cork_allow_counted(__u32 bottle_id, __u8 hook, __u8 reason,
					      __u32 rule_id, const struct cork_dst *dst,
					      __u32 sock_type)
{
	void *allows = CORK_MAP(allows, bottle_id);
	struct cork_allow_key k = {};
	struct cork_allow_value fresh = {};
	struct cork_allow_value *v;
	__u64 now, jiffies;

	if (!allows)
		return 0;
	k.pid = bpf_get_current_pid_tgid() >> 32;
	k.rule_id = rule_id;
	__builtin_memcpy(k.dst, dst->addr, 16);
	k.dport = dst->port;
	k.hook = hook;
	k.reason = reason;
	k.family = dst->family;
	k.proto = dst->proto;
	k.sock_type = sock_type;
	v = bpf_map_lookup_elem(allows, &k);
	jiffies = bpf_jiffies64();
	if (v && jiffies < v->open_until_jiffies) {
		__sync_fetch_and_add(&v->counted, 1);
		return 1;
	}
	now = bpf_ktime_get_boot_ns();
	if (v && now < v->window_end_ns) {
		__sync_fetch_and_add(&v->counted, 1);
		/* Racing writers each store a value that is right for the window they read. */
		v->open_until_jiffies = cork_jiffies_before(jiffies, now, v->window_end_ns);
		return 1;
	}
	/* Recorded, and the flow's window (re)starts. Two CPUs racing here both record. */
	if (v) {
		v->window_end_ns = now + CORK_ALLOW_WINDOW_NS;
		v->open_until_jiffies =
			cork_jiffies_before(jiffies, now, now + CORK_ALLOW_WINDOW_NS);
	} else {
		fresh.window_end_ns = now + CORK_ALLOW_WINDOW_NS;
		fresh.open_until_jiffies =
			cork_jiffies_before(jiffies, now, now + CORK_ALLOW_WINDOW_NS);
		bpf_map_update_elem(allows, &k, &fresh, BPF_NOEXIST); /* full: recorded, as ever */
	}
	return 0;
}

#endif
