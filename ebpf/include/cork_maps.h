/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Map definitions shared by every cork object. Each object declares the same maps and the
 * loader gives all objects of one bottle the same pin directory, so LIBBPF_PIN_BY_NAME
 * makes them one set of maps per bottle (created by the first object, reused by the rest).
 */
#ifndef CORK_MAPS_H
#define CORK_MAPS_H

#include "cork_bpf.h"

/*
 * The policy maps come in two slots: the unsuffixed maps are slot 0, the `_1` maps slot 1.
 * cork_gen holds the live slot. A policy update (`cork bottle update`) fills the other
 * slot, reads it back, then flips this one word: every decision reads the slot once and
 * looks in one map of it, so no connect sees half of one policy and half of another.
 * Empty tries cost nothing (BPF_F_NO_PREALLOC).
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cork_gen SEC(".maps");

#define CORK_RULES_V4_MAP(name)                                                             \
	struct {                                                                            \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);                                        \
		__uint(map_flags, BPF_F_NO_PREALLOC);                                       \
		__uint(max_entries, CORK_MAX_PREFIXES);                                     \
		__type(key, struct cork_lpm_v4_key);                                        \
		__type(value, struct cork_prefix_value);                                    \
		__uint(pinning, LIBBPF_PIN_BY_NAME);                                        \
	} name SEC(".maps")

#define CORK_RULES_V6_MAP(name)                                                             \
	struct {                                                                            \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);                                        \
		__uint(map_flags, BPF_F_NO_PREALLOC);                                       \
		__uint(max_entries, CORK_MAX_PREFIXES);                                     \
		__type(key, struct cork_lpm_v6_key);                                        \
		__type(value, struct cork_prefix_value);                                    \
		__uint(pinning, LIBBPF_PIN_BY_NAME);                                        \
	} name SEC(".maps")

/* Host loopback ports the bottle may reach (host byte order → 1). */
#define CORK_HOST_PORTS_MAP(name)                                                           \
	struct {                                                                            \
		__uint(type, BPF_MAP_TYPE_HASH);                                            \
		__uint(max_entries, CORK_MAX_HOST_PORTS);                                   \
		__type(key, __u16);                                                         \
		__type(value, __u8);                                                        \
		__uint(pinning, LIBBPF_PIN_BY_NAME);                                        \
	} name SEC(".maps")

/* The unix socket names the bottle may reach (allow) or never (deny); any other is denied. */
#define CORK_UNIX_NAMES_MAP(name)                                                           \
	struct {                                                                            \
		__uint(type, BPF_MAP_TYPE_HASH);                                            \
		__uint(max_entries, CORK_MAX_UNIX_NAMES);                                   \
		__type(key, struct cork_unix_key);                                          \
		__type(value, struct cork_unix_value);                                      \
		__uint(pinning, LIBBPF_PIN_BY_NAME);                                        \
	} name SEC(".maps")

CORK_RULES_V4_MAP(cork_rules_v4);
CORK_RULES_V4_MAP(cork_rules_v4_1);
CORK_RULES_V6_MAP(cork_rules_v6);
CORK_RULES_V6_MAP(cork_rules_v6_1);
CORK_HOST_PORTS_MAP(cork_host_ports);
CORK_HOST_PORTS_MAP(cork_hostport_1);
CORK_UNIX_NAMES_MAP(cork_unix_names);
CORK_UNIX_NAMES_MAP(cork_unixname_1);

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

/* The settings of the bottle whose cgroup has id `cgroup_id`, or 0 when there is none. */
static __always_inline const struct cork_bottle_cfg *cork_cfg_of(__u64 cgroup_id)
{
	const struct cork_bottle_cfg *cfg = bpf_map_lookup_elem(&cork_cfg, &cgroup_id);

	return cfg && cfg->bottle_id ? cfg : 0;
}

/* The settings of the bottle the current task is in (process-context hooks only). */
static __always_inline const struct cork_bottle_cfg *cork_cfg_current(void)
{
	return cork_cfg_of(bpf_get_current_cgroup_id());
}

/* The live policy slot, 0 or 1 (0 until the first update). */
static __always_inline __u32 cork_policy_slot(void)
{
	__u32 zero = 0;
	__u32 *slot = bpf_map_lookup_elem(&cork_gen, &zero);

	return slot && *slot ? 1 : 0;
}

/* Which sockets this bottle created, and what their connect() was allowed to reach.
 * BPF_F_CLONE copies the state to sockets accepted from a bottle's listener. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct cork_sock_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cork_sock SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, CORK_EVENTS_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cork_events SEC(".maps");

/* Events that did not fit in the ring buffer; userspace reports them, never silent. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cork_lost SEC(".maps");

/* (socket, destination) pairs whose allow was already logged. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CORK_MAX_FLOWS);
	__type(key, struct cork_flow_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cork_flows SEC(".maps");

/* Redirected connections not yet accepted by the proxy: client address → original
 * destination (see struct cork_redirect_value). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CORK_MAX_REDIRECTS);
	__type(key, struct cork_redirect_key);
	__type(value, struct cork_redirect_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cork_redirects SEC(".maps");

#endif
