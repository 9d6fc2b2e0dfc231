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
 * after what it reads next, nor what it reads after before. x86 keeps loads in order
 * (only the compiler must be told); elsewhere a fully ordered read-modify-write of the
 * slot's state is the barrier. */
#ifdef CORK_LOADS_IN_ORDER
#define CORK_ALLOW_LOAD_STATE(s)                                                            \
	({                                                                                  \
		asm volatile("" ::: "memory");                                              \
		__u64 __cork_state = (s)->state;                                            \
		asm volatile("" ::: "memory");                                              \
		__cork_state;                                                               \
	})
#else
#define CORK_ALLOW_LOAD_STATE(s) __sync_fetch_and_add(&(s)->state, 0)
#endif
/* Keeps the compiler from moving a slot's stores or loads across it (x86 keeps each CPU's
 * stores, and its loads, in program order). */
#define CORK_ALLOW_ORDER() asm volatile("" ::: "memory")

/* The hash that picks a flow's two slots, over its key's four words: the agent computes
 * the same (allow_slots.rs `slots_of`) to find a flow it has a record of. */
#define CORK_ALLOW_HASH_MUL 0x9e3779b97f4a7c15ull

static __always_inline __u64 cork_allow_hash(const __u64 w[4])
{
	__u64 h = w[0] * CORK_ALLOW_HASH_MUL;

	h = (h ^ w[1]) * CORK_ALLOW_HASH_MUL;
	h = (h ^ w[2]) * CORK_ALLOW_HASH_MUL;
	h = (h ^ w[3]) * CORK_ALLOW_HASH_MUL;
	return h ^ (h >> 29);
}

/* A connect's flow as cork_allows knows it, and its two slots. */
struct cork_allow_flow {
	union {
		struct cork_allow_key k;
		__u64 w[4];
	} u;
	__u32 at[2];
};

static __always_inline void cork_allow_flow_init(struct cork_allow_flow *f, __u8 hook,
						 const struct cork_dst *dst, __u32 sock_type)
{
	__u64 h;

	f->u.k.pid = bpf_get_current_pid_tgid() >> 32;
	f->u.k.hook = hook;
	f->u.k.family = dst->family;
	f->u.k.proto = dst->proto;
	f->u.k.sock_type = sock_type;
	__builtin_memcpy(f->u.k.dst, dst->addr, 16);
	f->u.k.dport = dst->port;
	h = cork_allow_hash(f->u.w);
	f->at[0] = h & (CORK_MAX_ALLOW_FLOWS - 1);
	f->at[1] = (h >> 32) & (CORK_MAX_ALLOW_FLOWS - 1);
	if (f->at[1] == f->at[0])
		f->at[1] = f->at[0] ^ 1;
}

static __always_inline int cork_allow_key_is(const struct cork_allow_slot *s, const __u64 w[4])
{
	const __u64 *k = (const __u64 *)&s->key;

	return k[0] == w[0] && k[1] == w[1] && k[2] == w[2] && k[3] == w[3];
}

/* Is slot `at` the flow's, with its verdict kept under `gen` and still open at `jiffies`?
 * Then the connect is counted there (the slot's rule allowed it). */
static __always_inline int cork_allow_hit_at(void *allows, __u32 at,
					     const struct cork_allow_flow *f, __u64 gen,
					     __u64 jiffies)
{
	struct cork_allow_slot *s = bpf_map_lookup_elem(allows, &at);
	__u64 open_until, kept_gen, again;

	if (!s)
		return 0;
	/* open_until around the generation: its writer (one at a time: `keeper`) clears it,
	 * writes the generation, then sets it; the same value on both sides of the
	 * generation is that writer's pair. And a slot claimed by another flow meanwhile
	 * (its claimer too writes open_until last, before it publishes LIVE) shows either an
	 * open_until long past (the agent frees a slot only CORK_ALLOW_IDLE_NS after its
	 * window ended) or the new owner's rule and key. */
	open_until = s->value.open_until_jiffies;
	CORK_ALLOW_ORDER();
	kept_gen = s->value.policy_gen;
	CORK_ALLOW_ORDER();
	again = s->value.open_until_jiffies;
	if (jiffies >= open_until || again != open_until || kept_gen != gen)
		return 0;
	if (CORK_ALLOW_LOAD_STATE(s) != CORK_ALLOW_LIVE || !cork_allow_key_is(s, f->u.w))
		return 0;
	__sync_fetch_and_add(&s->value.counted, 1);
	return 1;
}

/*
 * A connect the policy allowed outright (an allow rule, not the proxy, not loopback) that
 * repeats, within CORK_ALLOW_WINDOW_NS, one already recorded is counted in its flow's slot
 * of the bottle's cork_allows instead of becoming a record: the agent writes one line per
 * count it finds there (userspace/bpf/src/counted.rs), so every allow is still a line or
 * in a line's `count`. And the slot keeps the verdict: while the policy generation is the
 * one it was reached under (cork_policy_gen: any write into the policy maps moves it) and
 * the learned addresses it read have not expired, the same connect gets the same answer,
 * so this asks neither the policy (a trie lookup and a scan: two calls, ~45 ns here) nor,
 * thanks to the jiffies (bpf_jiffies64, which the verifier inlines: a load), the clock.
 * What is left is the pid (a helper call), an array index the verifier inlines, compares
 * and one atomic add. Denies are never kept nor counted.
 * 1: counted and allowed (by the slot's rule); 0: ask the policy (cork_allow_counted
 * after it).
 */
static __always_inline int cork_allow_hit(void *allows, const struct cork_allow_flow *f,
					  __u64 gen)
{
#ifndef CORK_LOADS_IN_ORDER
	/* The protocol above leans on x86's load order: elsewhere nothing is kept. */
	return 0;
#endif
	__u64 jiffies = bpf_jiffies64();

	return cork_allow_hit_at(allows, f->at[0], f, gen, jiffies) ||
	       cork_allow_hit_at(allows, f->at[1], f, gen, jiffies);
}

/* The jiffies below which a verdict valid until `valid_until_ns` is kept, in a window
 * ending at `window_end_ns`. */
static __always_inline __u64 cork_allow_open_until(__u64 jiffies, __u64 now, __u64 window_end_ns,
						   __u64 valid_until_ns)
{
	__u64 end = window_end_ns < valid_until_ns ? window_end_ns : valid_until_ns;

	return cork_jiffies_before(jiffies, now, end);
}

/* Makes a free slot the flow's, its window starting now, keeping the verdict (`rule_id`,
 * valid until `valid_until_ns`) under `gen`; a slot another CPU claimed first, or whose
 * kept verdict a late writer still holds, is left (this connect is recorded either way). */
static __always_inline void cork_allow_claim(struct cork_allow_slot *s,
					     const struct cork_allow_flow *f, __u64 gen,
					     __u32 rule_id, __u64 valid_until_ns, __u64 jiffies,
					     __u64 now)
{
	if (__sync_val_compare_and_swap(&s->state, CORK_ALLOW_FREE, CORK_ALLOW_CLAIMED) !=
	    CORK_ALLOW_FREE)
		return;
	if (__sync_val_compare_and_swap(&s->value.keeper, 0, 1) != 0) {
		__sync_val_compare_and_swap(&s->state, CORK_ALLOW_CLAIMED, CORK_ALLOW_FREE);
		return;
	}
	s->key = f->u.k;
	s->value.rule_id = rule_id;
	s->value.policy_gen = gen;
	s->value.counted = 0;
	s->value.window_end_ns = now + CORK_ALLOW_WINDOW_NS;
	CORK_ALLOW_ORDER();
	s->value.open_until_jiffies =
		cork_allow_open_until(jiffies, now, now + CORK_ALLOW_WINDOW_NS, valid_until_ns);
	__sync_val_compare_and_swap(&s->value.keeper, 1, 0);
	/* Published fully ordered: whoever reads LIVE reads this key and verdict. */
	__sync_val_compare_and_swap(&s->state, CORK_ALLOW_CLAIMED, CORK_ALLOW_LIVE);
}

/* Keeps the verdict (`rule_id`, valid until `valid_until_ns`), reached under `gen`, in the
 * flow's slot `s`, if no other CPU is at it and the slot is still the flow's for that rule
 * (a slot freed and claimed by another flow since it was found must not get this
 * verdict's expiry). */
static __always_inline void cork_allow_keep(struct cork_allow_slot *s,
					    const struct cork_allow_flow *f, __u64 gen,
					    __u32 rule_id, __u64 valid_until_ns, __u64 jiffies,
					    __u64 now, __u64 window_end)
{
	if (__sync_val_compare_and_swap(&s->value.keeper, 0, 1) != 0)
		return;
	if (CORK_ALLOW_LOAD_STATE(s) == CORK_ALLOW_LIVE && cork_allow_key_is(s, f->u.w) &&
	    s->value.rule_id == rule_id) {
		s->value.open_until_jiffies = 0;
		CORK_ALLOW_ORDER();
		s->value.policy_gen = gen;
		CORK_ALLOW_ORDER();
		s->value.open_until_jiffies =
			cork_allow_open_until(jiffies, now, window_end, valid_until_ns);
	}
	__sync_val_compare_and_swap(&s->value.keeper, 1, 0);
}

/*
 * After the policy allowed a connect by rule `rule_id` (the same answer until
 * `valid_until_ns`), under generation `gen` (read before it was asked): counts it in the
 * flow's slot for that rule if its window is open, keeping the verdict there (1); else
 * the connect is to be recorded (0), and the flow's window (re)starts in its slot, or in a
 * free one it claims. A slot of the flow for another rule (the policy changed) is left to
 * go idle: its counts stay that rule's.
 */
static __always_inline int cork_allow_counted(void *allows, const struct cork_allow_flow *f,
					      __u64 gen, __u32 rule_id, __u64 valid_until_ns)
{
	struct cork_allow_slot *free = 0, *mine = 0;
	__u64 jiffies = bpf_jiffies64();
	__u64 now = bpf_ktime_get_boot_ns();

	for (int i = 0; i < 2; i++) {
		__u32 at = f->at[i];
		struct cork_allow_slot *s = bpf_map_lookup_elem(allows, &at);
		__u64 state;

		if (!s)
			continue;
		state = CORK_ALLOW_LOAD_STATE(s);
		if (state == CORK_ALLOW_LIVE && cork_allow_key_is(s, f->u.w) &&
		    s->value.rule_id == rule_id) {
			mine = s;
			break;
		}
		if (state == CORK_ALLOW_FREE && !free)
			free = s;
	}
	if (!mine) {
		if (free)
			cork_allow_claim(free, f, gen, rule_id, valid_until_ns, jiffies, now);
		return 0;
	}
	/* Racing writers of the window each store what is right for the window they read. */
	__u64 window_end = mine->value.window_end_ns;
	int counted = now < window_end;

	if (counted) {
		__sync_fetch_and_add(&mine->value.counted, 1);
	} else {
		window_end = now + CORK_ALLOW_WINDOW_NS;
		mine->value.window_end_ns = window_end;
	}
	/* A stale generation kept by a racing writer only sends later connects back to the
	 * policy. */
	cork_allow_keep(mine, f, gen, rule_id, valid_until_ns, jiffies, now, window_end);
	return counted;
}

#endif
