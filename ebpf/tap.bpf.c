// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * tc (tcx) ingress on a VM bottle's tap: every frame the guest sends. The guest is an
 * untrusted machine on a wire, so this judges frames, not sockets:
 *
 * 1. anti-spoofing: the source MAC must be the guest NIC's, the source address the one
 *    cork gave it (IPv4) or inside its /64 (IPv6); link-local plumbing (ARP for its own
 *    address, DHCP from 0.0.0.0, NDP from link-local or ::) passes marked LINK;
 * 2. DNS (UDP/TCP 53 to any address) passes marked DNS: nftables DNATs it to the bottle's
 *    DNS proxy, which is where names are judged and addresses learned;
 * 3. the gateway (the guest's view of the host) only on the manifest's host_ports;
 * 4. everything else is judged against the bottle's prefix tries with the same code as
 *    the cgroup hooks (cork_judge_remote): allowed flows pass marked DIRECT, flows the
 *    policy sends through the inspecting proxy pass marked INSPECT (nftables DNATs them),
 *    UDP to an inspected port is refused (QUIC), the rest is dropped.
 *
 * Every drop is an audit event (hook tc_ingress, the guest's source address and port; a
 * guest has no pid). Allowed TCP SYNs are audited too, once per connection attempt.
 */
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>

#include "cork_policy.h"
#include "cork_events.h"
#include "cork_packet.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by the loader for this bottle's guest. A VM bottle's tap program stays per bottle:
 * the guest's addresses as constants keep it within the verifier's budget, and a VM's
 * boot dwarfs one more verification. The cgroup hooks find their bottle in cork_cfg. */
const volatile struct cork_guest CORK_GUEST = {};
const volatile __u32 CORK_BOTTLE_ID = 0;

#define CORK_ETH_P_ARP 0x0806
#define CORK_ICMPV6 58
#define CORK_ND_RS 133
#define CORK_ND_NS 135
#define CORK_ND_NA 136

static __always_inline int cork_bytes_eq(const volatile __u8 *a, const __u8 *b, int n)
{
	for (int i = 0; i < n; i++)
		if (a[i] != b[i])
			return 0;
	return 1;
}

/* In the guest's own IPv6 prefix (whole bytes: cork hands out /64s). */
static __always_inline int cork_in_guest_prefix(const __u8 *addr)
{
	int bytes = CORK_GUEST.v6_prefix_len / 8;

	for (int i = 0; i < 16; i++)
		if (i < bytes && addr[i] != CORK_GUEST.v6_prefix[i])
			return 0;
	return bytes > 0;
}

/* linux/if_packet.h's PACKET_LOOPBACK (not included: it drags in socket headers). */
#define CORK_PACKET_LOOPBACK 5

static __always_inline int cork_is_link_local6(const __u8 *a)
{
	return a[0] == 0xfe && (a[1] & 0xc0) == 0x80;
}

static __always_inline int cork_is_unspecified6(const __u8 *a)
{
	for (int i = 0; i < 16; i++)
		if (a[i])
			return 0;
	return 1;
}

static __always_inline int cork_is_gateway(const struct cork_dst *dst)
{
	if (dst->family == CORK_AF_INET)
		return cork_bytes_eq(CORK_GUEST.gw4, dst->addr, 4);
	return cork_bytes_eq(CORK_GUEST.gw6, dst->addr, 16) ||
	       cork_bytes_eq(CORK_GUEST.gw6_ll, dst->addr, 16);
}

/* ICMPv6 type of a packet whose next header is ICMPv6 (no extension headers). */
static __always_inline int cork_icmp6_type(struct __sk_buff *skb)
{
	__u8 type = 0;

	if (bpf_skb_load_bytes(skb, ETH_HLEN + 40, &type, 1))
		return -1;
	return type;
}

static __always_inline int cork_is_ndp(int type)
{
	return type >= CORK_ND_RS && type <= CORK_ND_NA + 1; /* RS, RA, NS, NA, redirect */
}

/* Not inlined: one copy of the event code, called from every verdict below (inlined
 * copies each took their own stack and overran the 512-byte limit). */
static __noinline void cork_audit_pkt(const struct cork_pkt *pkt, __u32 verdict, __u32 reason,
				      __u32 rule_id)
{
	struct cork_event *ev = cork_event_start(CORK_BOTTLE_ID, CORK_HOOK_TC_INGRESS, verdict, reason, rule_id);

	if (!ev)
		return;
	cork_event_dst(ev, &pkt->dst);
	__builtin_memcpy(ev->src, pkt->src, 16);
	ev->sport = pkt->sport;
	cork_event_submit(ev);
}

static __always_inline void cork_audit(const struct cork_pkt *pkt, struct cork_decision d)
{
	cork_audit_pkt(pkt, d.verdict, d.reason, d.rule_id);
}

/* A TCP segment with SYN and without ACK: a new connection attempt. */
static __always_inline int cork_is_syn(struct __sk_buff *skb, const struct cork_pkt *pkt)
{
	__u8 flags = 0;
	__u32 off = ETH_HLEN + (pkt->dst.family == CORK_AF_INET ? 0 : 40);

	if (pkt->l4 != IPPROTO_TCP)
		return 0;
	if (pkt->dst.family == CORK_AF_INET) {
		__u8 ihl = 0;

		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ihl, 1))
			return 0;
		off += (ihl & 0xf) * 4;
	}
	if (bpf_skb_load_bytes(skb, off + 13, &flags, 1))
		return 0;
	return (flags & 0x12) == 0x02;
}

static __always_inline struct cork_decision cork_deny(__u8 reason)
{
	struct cork_decision d = { CORK_VERDICT_DENY, reason, CORK_RULE_NONE, 0 };

	return d;
}

/* The verdict for an IP packet whose source passed the anti-spoofing check. */
static __always_inline struct cork_decision cork_judge_guest(struct __sk_buff *skb,
							     const struct cork_pkt *pkt, __u32 *mark)
{
	struct cork_decision d = { CORK_VERDICT_ALLOW, CORK_REASON_ALLOW_RULE, CORK_RULE_NONE, 0 };
	const struct cork_dst *dst = &pkt->dst;

	if ((pkt->l4 == IPPROTO_UDP || pkt->l4 == IPPROTO_TCP) && dst->port == 53) {
		d.reason = CORK_REASON_DNS_NAT;
		*mark = CORK_MARK_DNS;
		return d;
	}
	if (cork_is_gateway(dst)) {
		if ((pkt->l4 == IPPROTO_UDP || pkt->l4 == IPPROTO_TCP) &&
		    cork_host_port_allowed(CORK_BOTTLE_ID, dst->port)) {
			d.reason = CORK_REASON_LOOPBACK_HOST_PORT;
			*mark = CORK_MARK_HOST;
			return d;
		}
		return cork_deny(CORK_REASON_GATEWAY_PORT);
	}
	if (pkt->l4 != IPPROTO_TCP && pkt->l4 != IPPROTO_UDP)
		return cork_deny(CORK_REASON_DEFAULT_DENY);
	d = cork_judge_remote(CORK_BOTTLE_ID, dst);
	if (d.verdict == CORK_VERDICT_ALLOW)
		*mark = d.redirect ? CORK_MARK_INSPECT : CORK_MARK_DIRECT;
	return d;
}

SEC("classifier")
int cork_tap_ingress(struct __sk_buff *skb)
{
	struct cork_pkt pkt = {};
	struct cork_decision d;
	struct ethhdr eth;
	__u32 mark = 0;

	/* The host's own multicast, looped back onto the tap by the host's stack
	 * (dev_loopback_xmit): it never came from the guest, and it has no Ethernet
	 * header (the data starts at the IP header). A guest's frames are never of this
	 * type: the tap driver classifies them as host, broadcast, multicast or other. */
	if (skb->pkt_type == CORK_PACKET_LOOPBACK)
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)))
		return TC_ACT_SHOT;
	int is_ip = cork_parse(skb, ETH_HLEN, &pkt);

	if (!cork_bytes_eq(CORK_GUEST.mac, eth.h_source, 6)) {
		cork_audit(&pkt, cork_deny(CORK_REASON_SPOOFED_MAC));
		return TC_ACT_SHOT;
	}
	if (eth.h_proto == bpf_htons(CORK_ETH_P_ARP)) {
		/* ARP for IPv4 over Ethernet: the sender address is at byte 14 of the ARP
		 * packet; it must be the guest's, or 0.0.0.0 for a probe. */
		__u8 spa[4];

		if (bpf_skb_load_bytes(skb, ETH_HLEN + 14, spa, 4))
			return TC_ACT_SHOT;
		if (cork_bytes_eq(CORK_GUEST.v4, spa, 4) || !(spa[0] | spa[1] | spa[2] | spa[3])) {
			skb->mark = (skb->mark & ~CORK_MARK_MASK) | CORK_MARK_LINK;
			return TC_ACT_OK;
		}
		cork_audit(&pkt, cork_deny(CORK_REASON_SPOOFED_SOURCE));
		return TC_ACT_SHOT;
	}
	if (!is_ip) {
		cork_audit(&pkt, cork_deny(CORK_REASON_NOT_IP));
		return TC_ACT_SHOT;
	}

	if (pkt.dst.family == CORK_AF_INET) {
		if (!cork_bytes_eq(CORK_GUEST.v4, pkt.src, 4)) {
			/* DHCP before the guest has an address: 0.0.0.0:68 to port 67. */
			int unspecified = !(pkt.src[0] | pkt.src[1] | pkt.src[2] | pkt.src[3]);

			if (unspecified && pkt.l4 == IPPROTO_UDP && pkt.dst.port == 67) {
				skb->mark = (skb->mark & ~CORK_MARK_MASK) | CORK_MARK_LINK;
				return TC_ACT_OK;
			}
			cork_audit(&pkt, cork_deny(CORK_REASON_SPOOFED_SOURCE));
			return TC_ACT_SHOT;
		}
		if (pkt.l4 == IPPROTO_UDP && pkt.dst.port == 67 && pkt.sport == 68) {
			skb->mark = (skb->mark & ~CORK_MARK_MASK) | CORK_MARK_LINK; /* DHCP renewal */
			return TC_ACT_OK;
		}
	} else {
		int link_local = cork_is_link_local6(pkt.src) || cork_is_unspecified6(pkt.src);

		if (pkt.l4 == CORK_ICMPV6 && cork_is_ndp(cork_icmp6_type(skb)) &&
		    (link_local || cork_in_guest_prefix(pkt.src))) {
			skb->mark = (skb->mark & ~CORK_MARK_MASK) | CORK_MARK_LINK;
			return TC_ACT_OK;
		}
		/* Link-scope multicast from a link-local (or no) address — the guest's MLD
		 * listener reports to ff02::16, behind a hop-by-hop header — is confined to
		 * the link: no router forwards it. It goes to the host's nftables input chain,
		 * which takes only NDP, not to a "spoofed source" alarm. */
		if (link_local && pkt.dst.addr[0] == 0xff && (pkt.dst.addr[1] & 0x0f) == 0x02) {
			skb->mark = (skb->mark & ~CORK_MARK_MASK) | CORK_MARK_LINK;
			return TC_ACT_OK;
		}
		/* From its link-local address to the router's: the host itself on the link
		 * (host_ports only, judged below like the gateway's global address). */
		int to_router = cork_is_link_local6(pkt.src) &&
				cork_bytes_eq(CORK_GUEST.gw6_ll, pkt.dst.addr, 16);

		if (!to_router && !cork_in_guest_prefix(pkt.src)) {
			cork_audit(&pkt, cork_deny(CORK_REASON_SPOOFED_SOURCE));
			return TC_ACT_SHOT;
		}
	}

	d = cork_judge_guest(skb, &pkt, &mark);
	if (d.verdict == CORK_VERDICT_ALLOW) {
		skb->mark = (skb->mark & ~CORK_MARK_MASK) | mark;
		if (mark != CORK_MARK_DNS && cork_is_syn(skb, &pkt))
			cork_audit(&pkt, d);
		return TC_ACT_OK;
	}
	cork_audit(&pkt, d);
	return TC_ACT_SHOT;
}
