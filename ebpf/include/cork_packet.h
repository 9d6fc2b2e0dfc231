// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Packet parsing shared by every hook that judges packets rather than sockets: the
 * cgroup_skb backstop (skb.bpf.c) and the tc program on a VM bottle's tap. One parser,
 * so both judge the same 5-tuple the same way.
 */
#ifndef CORK_PACKET_H
#define CORK_PACKET_H

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>

#include "cork_policy.h"

/* Parsed headers of an egress packet. src/dst as in cork_dst (IPv4 in the first bytes). */
struct cork_pkt {
	struct cork_dst dst;
	__u8 src[16];
	__u16 sport;
	__u8 l4; /* IANA protocol number of the first header after IP */
};

/*
 * Fill pkt from the network header at offset l3 (0 for cgroup_skb, which starts at the
 * IP header; ETH_HLEN for tc on a tap, which starts at the Ethernet header); the family
 * comes from skb->protocol. Returns 0 when the packet is neither IPv4 nor IPv6.
 */
static __always_inline int cork_parse(struct __sk_buff *skb, __u32 l3, struct cork_pkt *pkt)
{
	__u32 l4_off;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, l3, &ip, sizeof(ip)))
			return 0;
		pkt->dst.family = CORK_AF_INET;
		__builtin_memcpy(pkt->dst.addr, &ip.daddr, 4);
		__builtin_memcpy(pkt->src, &ip.saddr, 4);
		pkt->l4 = ip.protocol;
		l4_off = l3 + (ip.ihl & 0xf) * 4;
		/* Later fragments carry no ports; their first fragment was judged. */
		if (ip.frag_off & bpf_htons(0x1fff))
			return 1;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, l3, &ip6, sizeof(ip6)))
			return 0;
		pkt->dst.family = CORK_AF_INET6;
		__builtin_memcpy(pkt->dst.addr, &ip6.daddr, 16);
		__builtin_memcpy(pkt->src, &ip6.saddr, 16);
		pkt->l4 = ip6.nexthdr; /* extension headers: judged as that protocol (deny) */
		l4_off = l3 + sizeof(ip6);
	} else {
		return 0;
	}
	pkt->dst.proto = pkt->l4;
	if (pkt->l4 == IPPROTO_TCP || pkt->l4 == IPPROTO_UDP) {
		__be16 ports[2];

		if (bpf_skb_load_bytes(skb, l4_off, ports, sizeof(ports)) == 0) {
			pkt->sport = bpf_ntohs(ports[0]);
			pkt->dst.port = bpf_ntohs(ports[1]);
		}
	}
	return 1;
}

#endif /* CORK_PACKET_H */
