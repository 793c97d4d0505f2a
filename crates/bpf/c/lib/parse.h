/* SPDX-License-Identifier: Apache-2.0 */
/*
 * parse.h - what a TC program needs to know about a packet: its tuple (struct sy_ct_key),
 * where the transport header starts, TCP flags, fragments, and for an ICMP(v6) error the tuple
 * of the quoted packet. Reads through bpf_skb_load_bytes, so nothing is assumed linear.
 */
#ifndef SY_LIB_PARSE_H
#define SY_LIB_PARSE_H

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include "addr.h"

/* ---- wire constants ---- */

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

#define IPPROTO_ICMPV6_ 58
#define ICMP_DEST_UNREACH_ 3
#define ICMP_TIME_EXCEEDED_ 11
#define ICMP_PORT_UNREACH_ 3
#define ICMP_FRAG_NEEDED_ 4
#define ICMP6_DST_UNREACH_ 1
#define ICMP6_PKT_TOO_BIG_ 2
#define ICMP6_TIME_EXCEED_ 3
#define ICMP6_PORT_UNREACH_ 4

/* Offsets inside the Ethernet frame. */
#define L3_OFF ETH_HLEN
#define IP4_CSUM_OFF (L3_OFF + 10)
#define IP4_SADDR_OFF (L3_OFF + 12)
#define IP4_DADDR_OFF (L3_OFF + 16)
#define IP6_SADDR_OFF (L3_OFF + 8)
#define IP6_DADDR_OFF (L3_OFF + 24)

/* What parse() found. */
enum parse_result {
	P_OK = 0,      /* IPv4/IPv6 with TCP or UDP ports, or an ICMP error */
	P_PASS,        /* not for us: other ethertypes, protocols, extension headers */
	P_MALFORMED,   /* truncated transport header */
	P_FRAGMENT,    /* non-first fragment */
};

struct pkt {
	struct sy_ct_key t; /* the packet's own tuple */
	__u32 l4_off;
	__u32 ip_len;       /* IPv4 total length / IPv6 payload length + 40 */
	__u8 tcp_flags;
	__u8 df;            /* IPv4 DF set (IPv6: always 1, routers never fragment) */
	__u8 ip4_options;   /* IPv4 header longer than 20 bytes */
	__u8 icmp_error;    /* an ICMP(v6) error; inner fields valid */
	/* ICMP errors: the quoted packet */
	struct sy_ct_key inner;
	__u32 inner_l3_off;
	__u32 inner_l4_off;
};

static __always_inline int is_icmp_error(__u8 family, __u8 type)
{
	if (family == SY_AF_INET)
		return type == ICMP_DEST_UNREACH_ || type == ICMP_TIME_EXCEEDED_;
	return type == ICMP6_DST_UNREACH_ || type == ICMP6_PKT_TOO_BIG_ || type == ICMP6_TIME_EXCEED_;
}

/* Parse the quoted packet of an ICMP error at off (after the 8-byte ICMP header). */
static __always_inline int parse_inner(struct __sk_buff *skb, struct pkt *p, __u32 off)
{
	__be16 ports[2];

	p->inner_l3_off = off;
	p->inner.family = p->t.family;
	if (p->t.family == SY_AF_INET) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)))
			return P_MALFORMED;
		if (ip.version != 4 || ip.ihl < 5)
			return P_MALFORMED;
		addr_from_ip4(&p->inner.saddr, ip.saddr);
		addr_from_ip4(&p->inner.daddr, ip.daddr);
		p->inner.proto = ip.protocol;
		p->inner_l4_off = off + ip.ihl * 4;
	} else {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)))
			return P_MALFORMED;
		__builtin_memcpy(p->inner.saddr.bytes, &ip6.saddr, 16);
		__builtin_memcpy(p->inner.daddr.bytes, &ip6.daddr, 16);
		p->inner.proto = ip6.nexthdr;
		p->inner_l4_off = off + sizeof(ip6);
	}
	if (p->inner.proto != IPPROTO_TCP && p->inner.proto != IPPROTO_UDP)
		return P_PASS;
	if (bpf_skb_load_bytes(skb, p->inner_l4_off, ports, sizeof(ports)))
		return P_MALFORMED;
	p->inner.sport = ports[0];
	p->inner.dport = ports[1];
	p->icmp_error = 1;
	return P_OK;
}

static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
	__be16 eth_proto;

	if (bpf_skb_load_bytes(skb, 12, &eth_proto, sizeof(eth_proto)))
		return P_PASS;
	if (eth_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, L3_OFF, &ip, sizeof(ip)))
			return P_PASS;
		if (ip.version != 4 || ip.ihl < 5)
			return P_PASS;
		p->t.family = SY_AF_INET;
		addr_from_ip4(&p->t.saddr, ip.saddr);
		addr_from_ip4(&p->t.daddr, ip.daddr);
		p->t.proto = ip.protocol;
		p->ip_len = bpf_ntohs(ip.tot_len);
		p->df = (ip.frag_off & bpf_htons(0x4000)) != 0;
		p->ip4_options = ip.ihl != 5;
		p->l4_off = L3_OFF + ip.ihl * 4;
		if (ip.frag_off & bpf_htons(0x1fff))
			return P_FRAGMENT;
	} else if (eth_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, L3_OFF, &ip6, sizeof(ip6)))
			return P_PASS;
		p->t.family = SY_AF_INET6;
		__builtin_memcpy(p->t.saddr.bytes, &ip6.saddr, 16);
		__builtin_memcpy(p->t.daddr.bytes, &ip6.daddr, 16);
		p->t.proto = ip6.nexthdr;
		p->ip_len = bpf_ntohs(ip6.payload_len) + sizeof(ip6);
		p->df = 1;
		p->l4_off = L3_OFF + sizeof(ip6);
	} else {
		return P_PASS;
	}

	if (p->t.proto == IPPROTO_TCP) {
		__u8 hdr[14];

		if (bpf_skb_load_bytes(skb, p->l4_off, hdr, sizeof(hdr)))
			return P_MALFORMED;
		__builtin_memcpy(&p->t.sport, &hdr[0], 2);
		__builtin_memcpy(&p->t.dport, &hdr[2], 2);
		p->tcp_flags = hdr[13];
		return P_OK;
	}
	if (p->t.proto == IPPROTO_UDP) {
		__be16 ports[2];

		if (bpf_skb_load_bytes(skb, p->l4_off, ports, sizeof(ports)))
			return P_MALFORMED;
		p->t.sport = ports[0];
		p->t.dport = ports[1];
		return P_OK;
	}
	if ((p->t.family == SY_AF_INET && p->t.proto == IPPROTO_ICMP) ||
	    (p->t.family == SY_AF_INET6 && p->t.proto == IPPROTO_ICMPV6_)) {
		__u8 type;

		if (bpf_skb_load_bytes(skb, p->l4_off, &type, 1))
			return P_MALFORMED;
		if (!is_icmp_error(p->t.family, type))
			return P_PASS;
		return parse_inner(skb, p, p->l4_off + 8);
	}
	return P_PASS;
}

#endif /* SY_LIB_PARSE_H */
