/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xdp_parse.h - what the director needs to know about a frame, read with direct packet access
 * (XDP): the flow to hash (for an ICMP error, the quoted flow turned around, so the error
 * follows its flow), the inner IP packet's length, DF, and IPv4 options.
 */
#ifndef SY_LIB_XDP_PARSE_H
#define SY_LIB_XDP_PARSE_H

#include "parse.h"

/* What xdp_parse() found (P_OK, P_PASS, P_MALFORMED, P_FRAGMENT from parse.h). */
struct xdp_pkt {
	struct sy_ct_key flow; /* client -> VIP; for an ICMP error, the quoted flow turned around */
	__u32 ip_len;          /* bytes from the IP header to the end of the frame */
	__u8 df;               /* IPv4 DF (IPv6: 1) */
	__u8 ip4_options;      /* IPv4 header longer than 20 bytes */
	__u8 icmp_error;       /* the frame is an ICMP(v6) error about `flow` */
	__u8 pad;
};

/* Ports of a TCP or UDP header at l4, or P_MALFORMED. */
static __always_inline int xdp_ports(void *l4, void *end, __be16 *sport, __be16 *dport)
{
	__be16 *ports = l4;

	if ((void *)(ports + 2) > end)
		return P_MALFORMED;
	*sport = ports[0];
	*dport = ports[1];
	return P_OK;
}

/* The quoted packet of an ICMP error at `quote`, turned around into the flow it belongs to. */
static __always_inline int xdp_parse_quote(void *quote, void *end, __u8 family,
					   struct xdp_pkt *p)
{
	void *l4;

	if (family == SY_AF_INET) {
		struct iphdr *ip = quote;

		if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5)
			return P_MALFORMED;
		addr_from_ip4(&p->flow.saddr, ip->daddr);
		addr_from_ip4(&p->flow.daddr, ip->saddr);
		p->flow.proto = ip->protocol;
		l4 = quote + ip->ihl * 4;
	} else {
		struct ipv6hdr *ip6 = quote;

		if ((void *)(ip6 + 1) > end)
			return P_MALFORMED;
		__builtin_memcpy(p->flow.saddr.bytes, &ip6->daddr, 16);
		__builtin_memcpy(p->flow.daddr.bytes, &ip6->saddr, 16);
		p->flow.proto = ip6->nexthdr;
		l4 = quote + sizeof(*ip6);
	}
	if (p->flow.proto != IPPROTO_TCP && p->flow.proto != IPPROTO_UDP)
		return P_PASS;
	p->icmp_error = 1;
	/* Quoted source port is the VIP's, destination the client's: swap. */
	return xdp_ports(l4, end, &p->flow.dport, &p->flow.sport);
}

static __always_inline int xdp_parse(void *data, void *end, struct xdp_pkt *p)
{
	struct ethhdr *eth = data;
	void *l3 = data + ETH_HLEN, *l4;
	__u8 type;

	if ((void *)(eth + 1) > end)
		return P_PASS;
	p->ip_len = end - l3;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;

		if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5)
			return P_PASS;
		p->flow.family = SY_AF_INET;
		addr_from_ip4(&p->flow.saddr, ip->saddr);
		addr_from_ip4(&p->flow.daddr, ip->daddr);
		p->flow.proto = ip->protocol;
		p->df = (ip->frag_off & bpf_htons(0x4000)) != 0;
		p->ip4_options = ip->ihl != 5;
		if (ip->frag_off & bpf_htons(0x3fff)) /* MF or an offset */
			return P_FRAGMENT;
		l4 = l3 + ip->ihl * 4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > end)
			return P_PASS;
		p->flow.family = SY_AF_INET6;
		__builtin_memcpy(p->flow.saddr.bytes, &ip6->saddr, 16);
		__builtin_memcpy(p->flow.daddr.bytes, &ip6->daddr, 16);
		p->flow.proto = ip6->nexthdr;
		p->df = 1;
		if (p->flow.proto == 44) /* fragment header */
			return P_FRAGMENT;
		l4 = l3 + sizeof(*ip6);
	} else {
		return P_PASS;
	}
	if (p->flow.proto == IPPROTO_TCP || p->flow.proto == IPPROTO_UDP)
		return xdp_ports(l4, end, &p->flow.sport, &p->flow.dport);
	if ((p->flow.family == SY_AF_INET && p->flow.proto == IPPROTO_ICMP) ||
	    (p->flow.family == SY_AF_INET6 && p->flow.proto == IPPROTO_ICMPV6_)) {
		if (l4 + 8 > end)
			return P_MALFORMED;
		type = *(__u8 *)l4;
		if (!is_icmp_error(p->flow.family, type))
			return P_PASS;
		return xdp_parse_quote(l4 + 8, end, p->flow.family, p);
	}
	return P_PASS;
}

#endif /* SY_LIB_XDP_PARSE_H */
