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

/* Orders a program's loads of a cork_allows slot: what it read before this is not read
 * after what it reads next. x86 keeps loads in order (only the compiler must be told);
 * elsewhere a fully ordered read-modify-write of the slot's state is the barrier. */
#ifdef CORK_LOADS_IN_ORDER
#define CORK_ALLOW_LOAD_STATE(s) ({ asm volatile("" ::: "memory"); (s)->state; })
#else
#define CORK_ALLOW_LOAD_STATE(s) __sync_fetch_and_add(&(s)->state, 0)
#endif

/* The hash that picks a flow's two slots, over its key's four words: the agent computes
 * the same (counted.rs `slots_of`) to find a flow it has a record of. */
#define CORK_ALLOW_HASH_MUL 0x9e3779b97f4a7c15ull

static __always_inline __u64 cork_allow_hash(const __u64 w[4])
{
	__u64 h = w[0] * CORK_ALLOW_HASH_MUL;

	h = (h ^ w[1]) * CORK_ALLOW_HASH_MUL;
	h = (h ^ w[2]) * CORK_ALLOW_HASH_MUL;
	h = (h ^ w[3]) * CORK_ALLOW_HASH_MUL;
	return h ^ (h >> 29);
}

static __always_inline int cork_allow_key_is(const struct cork_allow_slot *s, const __u64 w[4])
{
	const __u64 *k = (const __u64 *)&s->key;

	return k[0] == w[0] && k[1] == w[1] && k[2] == w[2] && k[3] == w[3];
}

/* Counts a connect in its flow's slot if the flow's window is open (1), else restarts the
 * window and has the connect recorded (0). `open_until` and `window_end` are what the
 * slot held before its state and key were read (see cork_allow_counted). */
static __always_inline int cork_allow_count_in(struct cork_allow_slot *s, __u64 open_until,
					       __u64 window_end)
{
	__u64 jiffies = bpf_jiffies64();
	__u64 now;

	if (jiffies < open_until) {
		__sync_fetch_and_add(&s->value.counted, 1);
		return 1;
	}
	now = bpf_ktime_get_boot_ns();
	if (now < window_end) {
		__sync_fetch_and_add(&s->value.counted, 1);
		/* Racing writers each store a value that is right for the window they read. */
		s->value.open_until_jiffies = cork_jiffies_before(jiffies, now, window_end);
		return 1;
	}
	/* Recorded, and the flow's window (re)starts. Two CPUs racing here both record. */
	s->value.window_end_ns = now + CORK_ALLOW_WINDOW_NS;
	s->value.open_until_jiffies = cork_jiffies_before(jiffies, now, now + CORK_ALLOW_WINDOW_NS);
	return 0;
}

/* Makes a free slot the flow's, its window starting now; a slot another CPU claimed
 * first is left to it (this connect is recorded either way). */
static __always_inline void cork_allow_claim(struct cork_allow_slot *s,
					     const struct cork_allow_key *k)
{
	__u64 jiffies, now;

	if (__sync_val_compare_and_swap(&s->state, CORK_ALLOW_FREE, CORK_ALLOW_CLAIMED) !=
	    CORK_ALLOW_FREE)
		return;
	jiffies = bpf_jiffies64();
	now = bpf_ktime_get_boot_ns();
	s->key = *k;
	s->value.counted = 0;
	s->value.window_end_ns = now + CORK_ALLOW_WINDOW_NS;
	s->value.open_until_jiffies = cork_jiffies_before(jiffies, now, now + CORK_ALLOW_WINDOW_NS);
	/* Published fully ordered: whoever reads LIVE reads this key and window. */
	__sync_val_compare_and_swap(&s->state, CORK_ALLOW_CLAIMED, CORK_ALLOW_LIVE);
}

/* Slot `at` of the bottle's cork_allows when it is the flow's (LIVE, key `w`), else 0;
 * remembers it in `*free` when it is free and none was found before. */
static __always_inline struct cork_allow_slot *
cork_allow_probe(void *allows, __u32 at, const __u64 w[4], struct cork_allow_slot **free,
		 __u64 *open_until, __u64 *window_end)
{
	struct cork_allow_slot *s = bpf_map_lookup_elem(allows, &at);
	__u64 state;

	if (!s)
		return 0;
	/* The window first, then state and key: a slot freed and claimed by another flow
	 * between them shows either this flow's ended window (no count: the agent frees a
	 * slot only CORK_ALLOW_IDLE_NS after its window ended) or the new flow's key (the
	 * claimer writes its key before its window). */
	*open_until = s->value.open_until_jiffies;
	*window_end = s->value.window_end_ns;
	state = CORK_ALLOW_LOAD_STATE(s);
	if (state == CORK_ALLOW_LIVE && cork_allow_key_is(s, w))
		return s;
	if (state == CORK_ALLOW_FREE && !*free)
		*free = s;
	return 0;
}

/*
 * A connect the policy allowed outright (an allow rule, not the proxy, not loopback) that
 * repeats one already recorded in the last CORK_ALLOW_WINDOW_NS is counted in its flow's
 * slot of the bottle's cork_allows instead of becoming a record: the agent writes one
 * line per count it finds there (userspace/bpf/src/counted.rs), so every allow is still a
 * line or in a line's `count`. A record costs a connect ~200 ns here (eight helper calls)
 * and the agent a decode and a line; a count is an array index the verifier inlines, four
 * compares and one atomic add (the hash map this was before cost ~70 ns a connect: a
 * call, a jhash, a bucket walk). Denies are never counted.
 * Whether the window is open is first asked of the jiffies (bpf_jiffies64, which the
 * verifier inlines: a load), and only when they cannot tell of the clock (a helper call,
 * ~30 ns): most counted connects of a busy flow read no clock. Either way a count lands
 * only before the window_end_ns it read, which the agent's freeing relies on.
 * Returns 1 when counted (no record), 0 when this connect is to be recorded.
 */
static __always_inline int cork_allow_counted(__u32 bottle_id, __u8 hook, __u8 reason,
					      __u32 rule_id, const struct cork_dst *dst,
					      __u32 sock_type)
{
	void *allows = CORK_MAP(allows, bottle_id);
	union {
		struct cork_allow_key k;
		__u64 w[4];
	} u = {};
	struct cork_allow_slot *free = 0, *s;
	__u64 h, open_until = 0, window_end = 0;
	__u32 a, b;

	if (!allows)
		return 0;
	u.k.pid = bpf_get_current_pid_tgid() >> 32;
	u.k.rule_id = rule_id;
	__builtin_memcpy(u.k.dst, dst->addr, 16);
	u.k.dport = dst->port;
	u.k.hook = hook;
	u.k.reason = reason;
	u.k.family = dst->family;
	u.k.proto = dst->proto;
	u.k.sock_type = sock_type;
	h = cork_allow_hash(u.w);
	a = h & (CORK_MAX_ALLOW_FLOWS - 1);
	b = (h >> 32) & (CORK_MAX_ALLOW_FLOWS - 1);
	if (b == a)
		b = a ^ 1;
	s = cork_allow_probe(allows, a, u.w, &free, &open_until, &window_end);
	if (!s)
		s = cork_allow_probe(allows, b, u.w, &free, &open_until, &window_end);
	if (s)
		return cork_allow_count_in(s, open_until, window_end);
	if (free)
		cork_allow_claim(free, &u.k);
	return 0;
}

#endif
