/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Map definitions shared by every cork object, in two layouts.
 *
 * Per bottle (the tap object, and bottle_maps.bpf.c): the maps below are declared as they
 * are; the loader gives every object of one bottle the same pin directory, so
 * LIBBPF_PIN_BY_NAME makes them one set of maps per bottle.
 *
 * Shared (the cgroup objects, compiled with CORK_SHARED): one set of programs serves every
 * cgroup bottle of the host, loaded and verified once. A program finds its bottle in
 * cork_cfg (keyed by cgroup id), and each of that bottle's maps through an outer array
 * (`co_<name>`, indexed by bottle id) that holds the bottle's own map: a bottle's policy,
 * ring buffer and flow tables stay its own (pinned in its directory, sized, filled, read
 * back and freed as before), only the way to them is shared. cork_cfg and cork_sock (one
 * state per socket, tagged with its bottle) are host-wide.
 *
 * CORK_MAP(name, id) is the pointer to bottle `id`'s map cork_<name> in either layout: in
 * the shared one it may be 0 (no such bottle), and every caller then fails closed.
 */
#ifndef CORK_MAPS_H
#define CORK_MAPS_H

#include "cork_bpf.h"

/* The definition of each per-bottle map, without its pinning (an inner map's template
 * must not have one). Key and value by size: clang describes a struct reached only
 * through an inner map's template as a forward declaration, which has no size. */
#define CORK_GEN_DEF                                                                        \
	__uint(type, BPF_MAP_TYPE_ARRAY);                                                   \
	__uint(max_entries, 2);                                                             \
	__uint(key_size, sizeof(__u32));                                                    \
	__uint(value_size, sizeof(__u32))
#define CORK_RULES_V4_DEF                                                                   \
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);                                                \
	__uint(map_flags, BPF_F_NO_PREALLOC);                                               \
	__uint(max_entries, CORK_MAX_PREFIXES);                                             \
	__uint(key_size, sizeof(struct cork_lpm_v4_key));                                   \
	__uint(value_size, sizeof(struct cork_prefix_value))
#define CORK_RULES_V6_DEF                                                                   \
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);                                                \
	__uint(map_flags, BPF_F_NO_PREALLOC);                                               \
	__uint(max_entries, CORK_MAX_PREFIXES);                                             \
	__uint(key_size, sizeof(struct cork_lpm_v6_key));                                   \
	__uint(value_size, sizeof(struct cork_prefix_value))
/* Host loopback ports the bottle may reach (host byte order → 1). */
#define CORK_HOST_PORTS_DEF                                                                 \
	__uint(type, BPF_MAP_TYPE_HASH);                                                    \
	__uint(max_entries, CORK_MAX_HOST_PORTS);                                           \
	__uint(key_size, sizeof(__u16));                                                    \
	__uint(value_size, sizeof(__u8))
/* The unix socket names the bottle may reach (allow) or never (deny); any other is denied. */
#define CORK_UNIX_NAMES_DEF                                                                 \
	__uint(type, BPF_MAP_TYPE_HASH);                                                    \
	__uint(max_entries, CORK_MAX_UNIX_NAMES);                                           \
	__uint(key_size, sizeof(struct cork_unix_key));                                     \
	__uint(value_size, sizeof(struct cork_unix_value))
#define CORK_EVENTS_DEF                                                                     \
	__uint(type, BPF_MAP_TYPE_RINGBUF);                                                 \
	__uint(max_entries, CORK_EVENTS_BYTES)
/* Events that did not fit in the ring buffer; userspace reports them, never silent. */
#define CORK_LOST_DEF                                                                       \
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);                                            \
	__uint(max_entries, 1);                                                             \
	__uint(key_size, sizeof(__u32));                                                    \
	__uint(value_size, sizeof(__u64))
/* (socket, destination) pairs whose allow was already logged. */
#define CORK_FLOWS_DEF                                                                      \
	__uint(type, BPF_MAP_TYPE_LRU_HASH);                                                \
	__uint(max_entries, CORK_MAX_FLOWS);                                                \
	__uint(key_size, sizeof(struct cork_flow_key));                                     \
	__uint(value_size, sizeof(__u8))
/* Allowed connects counted instead of recorded, by flow (struct cork_allow_slot). */
#define CORK_ALLOWS_DEF                                                                     \
	__uint(type, BPF_MAP_TYPE_ARRAY);                                                   \
	__uint(map_flags, BPF_F_MMAPABLE);                                                  \
	__uint(max_entries, CORK_MAX_ALLOW_FLOWS);                                          \
	__uint(key_size, sizeof(__u32));                                                    \
	__uint(value_size, sizeof(struct cork_allow_slot))
/* Redirected connections not yet accepted by the proxy: client address → original
 * destination (see struct cork_redirect_value). */
#define CORK_REDIRECTS_DEF                                                                  \
	__uint(type, BPF_MAP_TYPE_LRU_HASH);                                                \
	__uint(max_entries, CORK_MAX_REDIRECTS);                                            \
	__uint(key_size, sizeof(struct cork_redirect_key));                                 \
	__uint(value_size, sizeof(struct cork_redirect_value))

#ifdef CORK_SHARED

/* The outer array of one per-bottle map: slot `bottle id` holds that bottle's map. */
#define CORK_OUTER(name, def)                                                               \
	struct {                                                                            \
		__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);                                   \
		__uint(max_entries, CORK_MAX_BOTTLES);                                      \
		__type(key, __u32);                                                         \
		__uint(pinning, LIBBPF_PIN_BY_NAME);                                        \
		__array(values, struct { def; });                                           \
	} name SEC(".maps")

CORK_OUTER(co_gen, CORK_GEN_DEF);
CORK_OUTER(co_rules_v4, CORK_RULES_V4_DEF);
CORK_OUTER(co_rules_v4_1, CORK_RULES_V4_DEF);
CORK_OUTER(co_rules_v6, CORK_RULES_V6_DEF);
CORK_OUTER(co_rules_v6_1, CORK_RULES_V6_DEF);
CORK_OUTER(co_host_ports, CORK_HOST_PORTS_DEF);
CORK_OUTER(co_hostport_1, CORK_HOST_PORTS_DEF);
CORK_OUTER(co_unix_names, CORK_UNIX_NAMES_DEF);
CORK_OUTER(co_unixname_1, CORK_UNIX_NAMES_DEF);
CORK_OUTER(co_events, CORK_EVENTS_DEF);
CORK_OUTER(co_lost, CORK_LOST_DEF);
CORK_OUTER(co_flows, CORK_FLOWS_DEF);
CORK_OUTER(co_allows, CORK_ALLOWS_DEF);
CORK_OUTER(co_redirects, CORK_REDIRECTS_DEF);

/*
 * Which bottle a cgroup hook is judging for, and that bottle's proxy ports: one entry per
 * bottle, keyed by the id of the cgroup its programs are attached to (on cgroup v2, the
 * inode number of the cgroup's directory). Looked up on every hook instead of being a
 * constant fixed at load, so the verified programs are the same for every bottle. A
 * process in any other cgroup (a child cgroup cannot be made: the bottle's cgroupfs is
 * read-only) finds no entry, and its hook fails closed.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CORK_MAX_BOTTLES);
	__type(key, __u64);
	__type(value, struct cork_bottle_cfg);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cork_cfg SEC(".maps");

/*
 * The same entry, where a hook finds it fastest: the cgroup local storage of the cgroup
 * the running program is attached to (a __u64 key: one storage per cgroup, shared by all
 * its hooks). bpf_get_local_storage is a pointer the kernel hands the program (~0 ns);
 * the hash lookup above cost ~80 ns, and a connect runs five hooks. The storage exists
 * only while a program using it is attached, and is zero until userspace copies the
 * cork_cfg entry into it just after attaching (userspace/bpf/src/cfg.rs): until then, and
 * under BPF_PROG_TEST_RUN (which gives each run fresh storage), the hash decides.
 */
struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_STORAGE);
	__type(key, __u64);
	__type(value, struct cork_bottle_cfg);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cork_cfg_attached SEC(".maps");

/* The entry in cork_cfg of the cgroup with id `cgroup_id`, or 0 when there is none. */
static __always_inline const struct cork_bottle_cfg *cork_cfg_lookup(__u64 cgroup_id)
{
	const struct cork_bottle_cfg *cfg = bpf_map_lookup_elem(&cork_cfg, &cgroup_id);

	return cfg && cfg->bottle_id ? cfg : 0;
}

/* The settings of the bottle the running program judges for: the attached cgroup's copy,
 * else (not copied yet) cork_cfg's entry for `cgroup_id`, else 0. A macro, so the id (a
 * helper call) is only asked for when the copy is missing. */
#define CORK_CFG_OF(cgroup_id)                                                              \
	({                                                                                  \
		const struct cork_bottle_cfg *__cork_cfg =                                  \
			bpf_get_local_storage(&cork_cfg_attached, 0);                       \
		__cork_cfg->bottle_id ? __cork_cfg : cork_cfg_lookup(cgroup_id);             \
	})

/* The settings of the bottle the current task is in (process-context hooks only). */
static __always_inline const struct cork_bottle_cfg *cork_cfg_current(void)
{
	return CORK_CFG_OF(bpf_get_current_cgroup_id());
}

/* Which sockets a bottle created, and what their connect() was allowed to reach.
 * BPF_F_CLONE copies the state to sockets accepted from a bottle's listener. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct cork_sock_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cork_sock SEC(".maps");

#define CORK_MAP(name, id)                                                                  \
	({                                                                                  \
		__u32 __cork_id = (id);                                                     \
		(void *)bpf_map_lookup_elem(&co_##name, &__cork_id);                        \
	})

#else

#define CORK_BOTTLE_MAP(name, def)                                                          \
	struct {                                                                            \
		def;                                                                        \
		__uint(pinning, LIBBPF_PIN_BY_NAME);                                        \
	} name SEC(".maps")

/*
 * The policy maps come in two slots: the unsuffixed maps are slot 0, the `_1` maps slot 1.
 * cork_gen[0] holds the live slot (its low bit; the rest counts the flips). A policy update
 * (`cork bottle update`) fills the other slot, reads it back, then flips this one word:
 * every decision reads the slot once and looks in one map of it, so no connect sees half
 * of one policy and half of another. cork_gen[1] counts the DNS learner's writes into the
 * tries. Together they are the policy generation (cork_policy_gen) a kept verdict is
 * checked against. Empty tries cost nothing (BPF_F_NO_PREALLOC).
 */
CORK_BOTTLE_MAP(cork_gen, CORK_GEN_DEF);
CORK_BOTTLE_MAP(cork_rules_v4, CORK_RULES_V4_DEF);
CORK_BOTTLE_MAP(cork_rules_v4_1, CORK_RULES_V4_DEF);
CORK_BOTTLE_MAP(cork_rules_v6, CORK_RULES_V6_DEF);
CORK_BOTTLE_MAP(cork_rules_v6_1, CORK_RULES_V6_DEF);
CORK_BOTTLE_MAP(cork_host_ports, CORK_HOST_PORTS_DEF);
CORK_BOTTLE_MAP(cork_hostport_1, CORK_HOST_PORTS_DEF);
CORK_BOTTLE_MAP(cork_unix_names, CORK_UNIX_NAMES_DEF);
CORK_BOTTLE_MAP(cork_unixname_1, CORK_UNIX_NAMES_DEF);
CORK_BOTTLE_MAP(cork_events, CORK_EVENTS_DEF);
CORK_BOTTLE_MAP(cork_lost, CORK_LOST_DEF);
CORK_BOTTLE_MAP(cork_flows, CORK_FLOWS_DEF);
CORK_BOTTLE_MAP(cork_allows, CORK_ALLOWS_DEF);
CORK_BOTTLE_MAP(cork_redirects, CORK_REDIRECTS_DEF);

#define CORK_MAP(name, id) ((void)(id), (void *)&cork_##name)

#endif /* CORK_SHARED */

/* Bottle `id`'s live policy slot, 0 or 1 (0 until the first update); -1 when the bottle
 * has no maps (shared layout only): the caller fails closed. */
static __always_inline int cork_policy_slot(__u32 id)
{
	__u32 zero = 0;
	void *gen = CORK_MAP(gen, id);
	__u32 *slot;

	if (!gen)
		return -1;
	slot = bpf_map_lookup_elem(gen, &zero);
	return slot && (*slot & 1) ? 1 : 0;
}

/* Bottle `id`'s policy generation: every write that can change a decision moves it (a
 * flip of the live slot moves cork_gen[0], the DNS learner's writes cork_gen[1]), and the
 * only other thing that changes a decision is the clock, for learned addresses. 0 when
 * the bottle has no maps; never 0 otherwise. Read before the policy is asked, so a
 * verdict kept under it was reached under it or a later one. */
static __always_inline __u64 cork_policy_gen(__u32 id)
{
	__u32 zero = 0, one = 1;
	void *gen = CORK_MAP(gen, id);
	__u32 *flips, *learns;

	if (!gen)
		return 0;
	flips = bpf_map_lookup_elem(gen, &zero);
	learns = bpf_map_lookup_elem(gen, &one);
	if (!flips || !learns)
		return 0;
	return ((__u64)*learns << 32 | *flips) + 1;
}

#endif
