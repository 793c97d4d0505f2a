/* SPDX-License-Identifier: Apache-2.0 */
/*
 * parse.h - what a TC program needs to know about a packet: its tuple (struct sy_ct_key),
 * where the transport header starts (IPv6: after the extension headers), TCP flags, SCTP's
 * first chunk type, fragments, and for an ICMP(v6) error the tuple of the quoted packet. Reads
 * through ctx_load_bytes (ctx.h: TC and XDP), so nothing is assumed linear.
 */
#ifndef SY_LIB_PARSE_H
#define SY_LIB_PARSE_H

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include "addr.h"
#include "ctx.h"

/* ---- wire constants ---- */

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

#define IPPROTO_ICMPV6_ 58
#define IPPROTO_SCTP_ 132

/* IPv6 extension headers parse() walks past (RFC 8200 section 4). */
#define IPV6_HOPOPTS_ 0
#define IPV6_ROUTING_ 43
#define IPV6_FRAGMENT_ 44
#define IPV6_DSTOPTS_ 60
/* At most this many extension headers before the transport header; a longer chain passes
 * (PKT_PASS_IPV6_EXT). Bounded so the verifier sees a fixed loop. */
#define IPV6_EXT_MAX 8

/* SCTP chunk types that end an association (conntrack moves to closing). */
#define SCTP_CHUNK_ABORT 6
#define SCTP_CHUNK_SHUTDOWN_COMPLETE 14

#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
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
	P_PASS,        /* not for us: other ethertypes and protocols */
	P_MALFORMED,   /* truncated transport header */
	P_FRAGMENT,    /* non-first fragment: addresses, protocol and fragment id only */
	P_VLAN,        /* 802.1Q / 802.1ad tagged frame (tag in the data or in the skb) */
	P_PASS_EXT,    /* IPv6: routing header with segments left, or too many extension headers */
};

/* struct pkt.frag */
#define FRAG_NONE 0  /* not a fragment */
#define FRAG_FIRST 1 /* offset 0, more fragments follow: carries the ports */
#define FRAG_LATER 2 /* offset > 0: no transport header; follows the first (frag.h) */

struct pkt {
	struct sy_ct_key t; /* the packet's own tuple */
	__u32 l4_off;
	__u32 ip_len;       /* IPv4 total length / IPv6 payload length + 40 */
	__u8 tcp_flags;
	__u8 df;            /* IPv4 DF set (IPv6: always 1, routers never fragment) */
	__u8 ip4_options;   /* IPv4 header longer than 20 bytes */
	__u8 icmp_error;    /* an ICMP(v6) error; inner fields valid */
	__u8 frag;          /* FRAG_NONE, FRAG_FIRST, FRAG_LATER */
	__u8 frag_proto;    /* IPv4 protocol / IPv6 fragment header's next header */
	__u8 sctp_chunk;    /* SCTP: type of the first chunk */
	__u8 pad_[5];
	__be32 frag_id;     /* IPv4 identification (16 bits) / IPv6 fragment header id */
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
static __always_inline int parse_inner(struct __ctx_buff *skb, struct pkt *p, __u32 off)
{
	__be16 ports[2];

	p->inner_l3_off = off;
	p->inner.family = p->t.family;
	if (p->t.family == SY_AF_INET) {
		struct iphdr ip;

		if (ctx_load_bytes(skb, off, &ip, sizeof(ip)))
			return P_MALFORMED;
		if (ip.version != 4 || ip.ihl < 5)
			return P_MALFORMED;
		addr_from_ip4(&p->inner.saddr, ip.saddr);
		addr_from_ip4(&p->inner.daddr, ip.daddr);
		p->inner.proto = ip.protocol;
		p->inner_l4_off = off + ip.ihl * 4;
	} else {
		struct ipv6hdr ip6;

		if (ctx_load_bytes(skb, off, &ip6, sizeof(ip6)))
			return P_MALFORMED;
		__builtin_memcpy(p->inner.saddr.bytes, &ip6.saddr, 16);
		__builtin_memcpy(p->inner.daddr.bytes, &ip6.daddr, 16);
		p->inner.proto = ip6.nexthdr;
		p->inner_l4_off = off + sizeof(ip6);
	}
	if (p->inner.proto != IPPROTO_TCP && p->inner.proto != IPPROTO_UDP &&
	    p->inner.proto != IPPROTO_SCTP_)
		return P_PASS;
	if (ctx_load_bytes(skb, p->inner_l4_off, ports, sizeof(ports)))
		return P_MALFORMED;
	p->inner.sport = ports[0];
	p->inner.dport = ports[1];
	p->icmp_error = 1;
	return P_OK;
}

/* Walk the IPv6 extension headers from p->l4_off (just after the fixed header) to the
 * transport header: hop-by-hop, routing, destination options and fragment headers are skipped
 * (a fragment header also records the fragment). A routing header with segments left means the
 * destination is not the final one (the transport checksum uses the final one), so the packet is
 * not ours to translate; AH and ESP end the walk (p->t.proto names them: passed untouched). */
static __always_inline int parse_ipv6_ext(struct __ctx_buff *skb, struct pkt *p)
{
	__u8 nh = p->t.proto;
	__u32 off = p->l4_off;
	int i;

#pragma unroll
	for (i = 0; i < IPV6_EXT_MAX; i++) {
		__u8 h[8];

		if (nh != IPV6_HOPOPTS_ && nh != IPV6_ROUTING_ && nh != IPV6_DSTOPTS_ &&
		    nh != IPV6_FRAGMENT_)
			break;
		if (ctx_load_bytes(skb, off, h, sizeof(h)))
			return P_MALFORMED;
		if (nh == IPV6_FRAGMENT_) {
			__be16 fo;

			__builtin_memcpy(&fo, &h[2], 2);
			__builtin_memcpy(&p->frag_id, &h[4], 4);
			p->frag_proto = h[0];
			off += 8;
			nh = h[0];
			if (bpf_ntohs(fo) & 0xfff8) {
				p->frag = FRAG_LATER;
				p->t.proto = nh;
				p->l4_off = off;
				return P_FRAGMENT;
			}
			if (bpf_ntohs(fo) & 1)
				p->frag = FRAG_FIRST;
			continue;
		}
		if (nh == IPV6_ROUTING_ && h[3] != 0)
			return P_PASS_EXT;
		off += ((__u32)h[1] + 1) * 8;
		nh = h[0];
	}
	p->t.proto = nh;
	p->l4_off = off;
	if (nh == IPV6_HOPOPTS_ || nh == IPV6_ROUTING_ || nh == IPV6_DSTOPTS_ || nh == IPV6_FRAGMENT_)
		return P_PASS_EXT;
	return P_OK;
}

static __always_inline int parse(struct __ctx_buff *skb, struct pkt *p)
{
	__be16 eth_proto;

	/* A tagged frame belongs to the VLAN's own device (the stack moves the tag into the skb
	 * before TC ingress; BPF_PROG_TEST_RUN leaves it in the data). */
	if (ctx_vlan_present(skb))
		return P_VLAN;
	if (ctx_load_bytes(skb, 12, &eth_proto, sizeof(eth_proto)))
		return P_PASS;
	if (eth_proto == bpf_htons(ETH_P_8021Q_) || eth_proto == bpf_htons(ETH_P_8021AD_))
		return P_VLAN;
	if (eth_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (ctx_load_bytes(skb, L3_OFF, &ip, sizeof(ip)))
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
		if (ip.frag_off & bpf_htons(0x3fff)) {
			p->frag_id = (__be32)ip.id;
			p->frag_proto = ip.protocol;
			if (ip.frag_off & bpf_htons(0x1fff)) {
				p->frag = FRAG_LATER;
				return P_FRAGMENT;
			}
			p->frag = FRAG_FIRST;
		}
	} else if (eth_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		int rc;

		if (ctx_load_bytes(skb, L3_OFF, &ip6, sizeof(ip6)))
			return P_PASS;
		p->t.family = SY_AF_INET6;
		__builtin_memcpy(p->t.saddr.bytes, &ip6.saddr, 16);
		__builtin_memcpy(p->t.daddr.bytes, &ip6.daddr, 16);
		p->t.proto = ip6.nexthdr;
		p->ip_len = bpf_ntohs(ip6.payload_len) + sizeof(ip6);
		p->df = 1;
		p->l4_off = L3_OFF + sizeof(ip6);
		rc = parse_ipv6_ext(skb, p);
		if (rc != P_OK)
			return rc;
	} else {
		return P_PASS;
	}

	if (p->t.proto == IPPROTO_TCP) {
		__u8 hdr[14];

		if (ctx_load_bytes(skb, p->l4_off, hdr, sizeof(hdr)))
			return P_MALFORMED;
		__builtin_memcpy(&p->t.sport, &hdr[0], 2);
		__builtin_memcpy(&p->t.dport, &hdr[2], 2);
		p->tcp_flags = hdr[13];
		return P_OK;
	}
	if (p->t.proto == IPPROTO_UDP) {
		__be16 ports[2];

		if (ctx_load_bytes(skb, p->l4_off, ports, sizeof(ports)))
			return P_MALFORMED;
		p->t.sport = ports[0];
		p->t.dport = ports[1];
		return P_OK;
	}
	if (p->t.proto == IPPROTO_SCTP_) {
		/* common header (ports, verification tag, CRC32c) and the first chunk's type */
		__u8 hdr[13];

		if (ctx_load_bytes(skb, p->l4_off, hdr, sizeof(hdr)))
			return P_MALFORMED;
		__builtin_memcpy(&p->t.sport, &hdr[0], 2);
		__builtin_memcpy(&p->t.dport, &hdr[2], 2);
		p->sctp_chunk = hdr[12];
		return P_OK;
	}
	if (p->frag != FRAG_NONE)
		return P_PASS; /* a fragmented ICMP error or other protocol: not followed */
	if ((p->t.family == SY_AF_INET && p->t.proto == IPPROTO_ICMP) ||
	    (p->t.family == SY_AF_INET6 && p->t.proto == IPPROTO_ICMPV6_)) {
		__u8 type;

		if (ctx_load_bytes(skb, p->l4_off, &type, 1))
			return P_MALFORMED;
		if (!is_icmp_error(p->t.family, type))
			return P_PASS;
		return parse_inner(skb, p, p->l4_off + 8);
	}
	return P_PASS;
}

#endif /* SY_LIB_PARSE_H */
