/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The policy decision shared by every hook: one longest-prefix-match lookup, then a scan
 * of that entry's slots where any matching DENY wins over any matching ALLOW. The policy
 * compiler (policy/src/plan.rs) copies every enclosing prefix's slots into each entry, so
 * the longest match alone carries every rule that applies.
 */
#ifndef CORK_POLICY_H
#define CORK_POLICY_H

#include "cork_maps.h"

struct cork_decision {
	__u8 verdict; /* enum cork_verdict */
	__u8 reason;  /* enum cork_reason */
	__u32 rule_id;
	__u8 redirect; /* allowed only through the inspecting proxy */
	/* Boot-clock time until which the same question gets this answer under the same
	 * policy generation: the expiry of the learned addresses it read, if any (only
	 * cork_judge_remote sets it; 0: not to be kept at all). */
	__u64 valid_until_ns;
};

/* Does this allow slot send its traffic to this port through the proxy? */
static __always_inline int cork_slot_redirects(const struct cork_port_rule *s, __u16 port)
{
	if (s->action == CORK_ACTION_REDIRECT)
		return 1;
	return s->action == CORK_ACTION_REDIRECT_WEB && (port == 80 || port == 443);
}

static __always_inline int cork_slot_matches(const struct cork_port_rule *s, __u8 proto,
					     __u16 port)
{
	if (s->proto != CORK_PROTO_ANY && s->proto != proto)
		return 0;
	return port >= s->port_lo && port <= s->port_hi;
}

static __always_inline struct cork_decision cork_scan(const struct cork_prefix_value *v,
						      __u8 proto, __u16 port)
{
	struct cork_decision d = { CORK_VERDICT_DENY, CORK_REASON_DEFAULT_DENY, CORK_RULE_NONE, 0 };
	__u32 allow_rule = CORK_RULE_NONE;
	__u32 quic_rule = CORK_RULE_NONE;
	int allowed = 0, redirect = 0, quic = 0;
	__u32 count = v->count;
	__u32 live = v->static_count;

	if (count > CORK_PREFIX_SLOTS)
		count = CORK_PREFIX_SLOTS;
	/* Learned slots count only until their DNS answer expires (the clock is only read
	 * for an entry that has any: a helper call costs a connect ~20 ns). */
	if (count > live && v->learned_until_ns > bpf_ktime_get_boot_ns())
		live = count;
	for (__u32 i = 0; i < CORK_PREFIX_SLOTS; i++) {
		const struct cork_port_rule *s = &v->slots[i];

		if (i >= count || i >= live)
			break;
		if (!cork_slot_matches(s, proto, port))
			continue;
		if (s->action == CORK_ACTION_DENY) {
			d.reason = CORK_REASON_DENY_RULE;
			d.rule_id = s->rule_id;
			return d;
		}
		if (s->action == CORK_ACTION_NONE)
			continue;
		if (cork_slot_redirects(s, port)) {
			/* UDP to an inspected port is HTTP/3 the proxy cannot see: refuse it, so
			 * the client falls back to TCP (a deny slot, if any, still wins). */
			if (proto == IPPROTO_UDP) {
				if (!quic)
					quic_rule = s->rule_id;
				quic = 1;
				continue;
			}
			redirect = 1;
		}
		if (!allowed) {
			allowed = 1;
			allow_rule = s->rule_id;
		}
	}
	if (quic) {
		d.reason = CORK_REASON_QUIC_REFUSED;
		d.rule_id = quic_rule;
	} else if (allowed) {
		d.verdict = CORK_VERDICT_ALLOW;
		d.reason = redirect ? CORK_REASON_PROXY_REDIRECT : CORK_REASON_ALLOW_RULE;
		d.rule_id = allow_rule;
		d.redirect = redirect;
	}
	return d;
}

/*
 * cork_scan of an entry, packed into a scalar: verdict | reason << 8 | redirect << 16 |
 * rule_id << 32. A global function is verified once, on its own: a caller's paths meet
 * again at its scalar result instead of each carrying the scan's branches (with the scan
 * inlined once per policy slot, the tap program overran the verifier's budget of a
 * million instructions). A NULL entry is the default deny.
 */
__noinline __u64 cork_scan_packed(const struct cork_prefix_value *v, __u32 proto, __u32 port)
{
	struct cork_decision d = { CORK_VERDICT_DENY, CORK_REASON_DEFAULT_DENY, CORK_RULE_NONE, 0 };

	if (v)
		d = cork_scan(v, (__u8)proto, (__u16)port);
	return (__u64)d.verdict | (__u64)d.reason << 8 | (__u64)d.redirect << 16 |
	       (__u64)d.rule_id << 32;
}

static __always_inline struct cork_decision cork_unpack(__u64 packed)
{
	struct cork_decision d = { (__u8)packed, (__u8)(packed >> 8), (__u32)(packed >> 32),
				   (__u8)(packed >> 16) };

	return d;
}

/*
 * The entry for `key` in the live slot's map of a slot pair (`slot` from cork_policy_slot:
 * 0, 1, or -1 for none), or 0. Two call sites, one per slot, on purpose: where one call
 * site can see two maps the verifier leaves the generic bpf_map_lookup_elem helper, which
 * reaches the map's lookup through an indirect call (a retpoline on this kernel, ~20 ns
 * a connect); a call site with one map kind calls that lookup directly. The empty asm
 * keeps clang from merging the two calls back into one.
 */
#define CORK_SLOT_LOOKUP(slot, id, name0, name1, key)                                       \
	({                                                                                  \
		void *__cork_v = 0;                                                         \
		if ((slot) == 1) {                                                          \
			void *__cork_m = CORK_MAP(name1, id);                               \
			if (__cork_m) {                                                     \
				__cork_v = bpf_map_lookup_elem(__cork_m, key);              \
				asm volatile("" ::: "memory");                              \
			}                                                                   \
		} else if ((slot) == 0) {                                                   \
			void *__cork_m = CORK_MAP(name0, id);                               \
			if (__cork_m)                                                       \
				__cork_v = bpf_map_lookup_elem(__cork_m, key);              \
		}                                                                           \
		__cork_v;                                                                   \
	})

/* Judge a non-loopback destination against bottle `id`'s prefix rules (denied when the
 * bottle has no maps). */
static __always_inline struct cork_decision cork_judge_remote(__u32 id, const struct cork_dst *dst)
{
	const struct cork_prefix_value *v;

	/* One read of the live slot, one lookup in it (cork_maps.h). */
	int slot = cork_policy_slot(id);

	if (dst->family == CORK_AF_INET) {
		struct cork_lpm_v4_key k = { .prefixlen = 32 };

		__builtin_memcpy(k.addr, dst->addr, 4);
		v = CORK_SLOT_LOOKUP(slot, id, rules_v4, rules_v4_1, &k);
	} else {
		struct cork_lpm_v6_key k = { .prefixlen = 128 };

		__builtin_memcpy(k.addr, dst->addr, 16);
		v = CORK_SLOT_LOOKUP(slot, id, rules_v6, rules_v6_1, &k);
	}
	struct cork_decision d = cork_unpack(cork_scan_packed(v, dst->proto, dst->port));

	/* An entry with learned slots answers otherwise once they expire (cork_scan). */
	if (v)
		d.valid_until_ns = v->count > v->static_count ? v->learned_until_ns : ~0ull;
	return d;
}

static __always_inline int cork_is_loopback(const struct cork_dst *dst)
{
	if (dst->family == CORK_AF_INET)
		return dst->addr[0] == 127;
	for (int i = 0; i < 15; i++)
		if (dst->addr[i])
			return 0;
	return dst->addr[15] == 1;
}

static __always_inline int cork_host_port_allowed(__u32 id, __u16 port)
{
	int slot = cork_policy_slot(id);

	return CORK_SLOT_LOOKUP(slot, id, host_ports, hostport_1, &port) != 0;
}

/*
 * Fold an IPv6 destination (four network-order words, as in bpf_sock_addr.user_ip6) into a
 * cork_dst: ::ffff:a.b.c.d becomes IPv4 a.b.c.d, :: becomes ::1 and ::ffff:0.0.0.0 becomes
 * 127.0.0.1 — the kernel itself sends to loopback for an unspecified destination
 * (net/ipv6/tcp_ipv6.c tcp_v6_connect, net/ipv4/route.c ip_route_connect).
 */
static __always_inline void cork_dst_from_v6(struct cork_dst *dst, __u32 w0, __u32 w1,
					     __u32 w2, __u32 w3)
{
	dst->raw[0] = w0;
	dst->raw[1] = w1;
	dst->raw[2] = w2;
	dst->raw[3] = w3;
	if (w0 == 0 && w1 == 0 && w2 == bpf_htonl(0xffff)) {
		dst->family = CORK_AF_INET;
		if (w3 == 0)
			w3 = bpf_htonl(0x7f000001);
		__builtin_memcpy(dst->addr, &w3, 4);
		return;
	}
	dst->family = CORK_AF_INET6;
	if ((w0 | w1 | w2 | w3) == 0)
		w3 = bpf_htonl(1);
	__builtin_memcpy(dst->addr, &w0, 4);
	__builtin_memcpy(dst->addr + 4, &w1, 4);
	__builtin_memcpy(dst->addr + 8, &w2, 4);
	__builtin_memcpy(dst->addr + 12, &w3, 4);
}

static __always_inline void cork_dst_from_v4(struct cork_dst *dst, __u32 ip4)
{
	dst->raw[0] = ip4;
	dst->family = CORK_AF_INET;
	if (ip4 == 0)
		ip4 = bpf_htonl(0x7f000001);
	__builtin_memcpy(dst->addr, &ip4, 4);
}

#endif
