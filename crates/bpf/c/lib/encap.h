/* SPDX-License-Identifier: Apache-2.0 */
/*
 * encap.h - the director's encapsulation in XDP: room in front of the frame
 * (bpf_xdp_adjust_head), then Ethernet, outer IPv4/IPv6, UDP and the GUE header written with
 * constant offsets. The inner packet is not touched. Wire format: docs/director.md.
 */
#ifndef SY_LIB_ENCAP_H
#define SY_LIB_ENCAP_H

#include <linux/udp.h>
#include "parse.h"
#include "csum.h"

#define IPPROTO_IPIP_ 4
#define IPPROTO_IPV6_ 41
#define IPPROTO_UDP_ 17

/* Bytes of the second-chance private data (struct sy_gue_prev and the address). */
static __always_inline __u32 encap_prev_len(__u8 outer_family)
{
	return 4 * (outer_family == SY_AF_INET ? SY_GUE_PREV_HLEN4 : SY_GUE_PREV_HLEN6);
}

/* Bytes the encapsulation puts in front of the inner IP packet (`prev`: with the second
 * chance's private data, GUE only). */
static __always_inline __u32 encap_overhead(__u8 encap, __u8 outer_family, int prev)
{
	__u32 ip = outer_family == SY_AF_INET ? 20 : 40;

	if (encap == SY_ENCAP_IPIP)
		return ip;
	if (encap == SY_ENCAP_FOU)
		return ip + 8;
	return ip + 8 + sizeof(struct sy_gue_hdr) + (prev ? encap_prev_len(outer_family) : 0);
}

/* The IP protocol number of the outer header: UDP, or the inner family for IPIP. */
static __always_inline __u8 encap_outer_proto(__u8 encap, __u8 inner_family)
{
	if (encap != SY_ENCAP_IPIP)
		return IPPROTO_UDP_;
	return inner_family == SY_AF_INET ? IPPROTO_IPIP_ : IPPROTO_IPV6_;
}

/* What one encapsulation writes. */
struct encap_hdr {
	const struct sy_addr *src;
	const struct sy_addr *dst;
	const struct sy_addr *prev; /* GUE: the slot's previous node (same family as dst), or NULL */
	__u32 inner_len;  /* bytes of the inner IP packet */
	__u8 encap;       /* SY_ENCAP_* */
	__u8 inner_family;
	__be16 gue_port;
	__be16 sport;     /* outer UDP source port (from the flow hash) */
	__u32 flow_label; /* IPv6 outer flow label (from the flow hash) */
	__u8 dmac[ETH_ALEN];
	__u8 smac[ETH_ALEN];
};

static __always_inline __u16 ip4_header_csum(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;
	int i;

	for (i = 0; i < 10; i++)
		sum += w[i];
	return csum_fold(sum);
}

/* Writes UDP and, for GUE, the GUE header (and the second chance's private data) at `udp`
 * (the outer IP header's end). The caller checked that 12 bytes (with `prev`: 32) after `udp`
 * are in the frame. */
static __always_inline void encap_udp(struct udphdr *udp, const struct encap_hdr *h, int v4)
{
	__u32 len = 8 + h->inner_len;

	if (h->encap == SY_ENCAP_GUE) {
		struct sy_gue_hdr *gue = (void *)(udp + 1);

		len += sizeof(*gue);
		/* version 0, C 0 (data); flags 0: every optional word is private data */
		gue->vc_hlen = 0;
		gue->proto = h->inner_family == SY_AF_INET ? IPPROTO_IPIP_ : IPPROTO_IPV6_;
		gue->flags = 0;
		if (h->prev) {
			struct sy_gue_prev *opt = (void *)(gue + 1);

			opt->kind = SY_GUE_PREV_KIND;
			opt->hops = 0;
			opt->family = v4 ? SY_AF_INET : SY_AF_INET6;
			opt->reserved = 0;
			if (v4) {
				__builtin_memcpy((void *)(opt + 1), &h->prev->words[3], 4);
				gue->vc_hlen = SY_GUE_PREV_HLEN4;
				len += 4 * SY_GUE_PREV_HLEN4;
			} else {
				__builtin_memcpy((void *)(opt + 1), h->prev->bytes, 16);
				gue->vc_hlen = SY_GUE_PREV_HLEN6;
				len += 4 * SY_GUE_PREV_HLEN6;
			}
		}
	}
	udp->source = h->sport;
	udp->dest = h->gue_port;
	udp->len = bpf_htons(len);
	/* Zero: no checksum (IPv4), and for IPv6 the tunnel exception of RFC 6935/6936; the
	 * inner packet keeps its own checksums end to end. */
	udp->check = 0;
}

/* Puts the outer headers in front of the frame's IP packet. Returns 0 or -1. */
static __always_inline int encap_push(struct xdp_md *ctx, const struct encap_hdr *h)
{
	__u8 outer_family = addr_is_v4_mapped(h->dst) ? SY_AF_INET : SY_AF_INET6;
	__u32 overhead = encap_overhead(h->encap, outer_family, h->prev != 0);
	__u8 proto = encap_outer_proto(h->encap, h->inner_family);
	struct ethhdr *eth;
	void *data, *end;

	if (bpf_xdp_adjust_head(ctx, -(int)overhead))
		return -1;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	if (outer_family == SY_AF_INET) {
		struct iphdr *ip = data + ETH_HLEN;

		/* 12: UDP + GUE; 32: and the private data (only with TCP: its 40 bytes or more
		 * follow). The inner packet is longer than that, so these always hold. */
		if ((void *)(ip + 1) + 12 > end || (h->prev && (void *)(ip + 1) + 32 > end))
			return -1;
		__builtin_memcpy(eth->h_dest, h->dmac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, h->smac, ETH_ALEN);
		eth->h_proto = bpf_htons(ETH_P_IP);
		ip->version = 4;
		ip->ihl = 5;
		ip->tos = 0;
		ip->tot_len = bpf_htons(overhead + h->inner_len);
		ip->id = 0;
		ip->frag_off = bpf_htons(0x4000); /* DF: the director answers too-big itself */
		ip->ttl = 64;
		ip->protocol = proto;
		ip->check = 0;
		ip->saddr = h->src->words[3];
		ip->daddr = h->dst->words[3];
		ip->check = ip4_header_csum(ip);
		if (h->encap != SY_ENCAP_IPIP)
			encap_udp((void *)(ip + 1), h, 1);
	} else {
		struct ipv6hdr *ip6 = data + ETH_HLEN;
		__u32 fl = h->flow_label & 0xfffff;

		if ((void *)(ip6 + 1) + 12 > end || (h->prev && (void *)(ip6 + 1) + 32 > end))
			return -1;
		__builtin_memcpy(eth->h_dest, h->dmac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, h->smac, ETH_ALEN);
		eth->h_proto = bpf_htons(ETH_P_IPV6);
		ip6->version = 6;
		ip6->priority = 0;
		ip6->flow_lbl[0] = (__u8)(fl >> 16);
		ip6->flow_lbl[1] = (__u8)(fl >> 8);
		ip6->flow_lbl[2] = (__u8)fl;
		ip6->payload_len = bpf_htons(overhead - 40 + h->inner_len);
		ip6->nexthdr = proto;
		ip6->hop_limit = 64;
		__builtin_memcpy(&ip6->saddr, h->src->bytes, 16);
		__builtin_memcpy(&ip6->daddr, h->dst->bytes, 16);
		if (h->encap != SY_ENCAP_IPIP)
			encap_udp((void *)(ip6 + 1), h, 0);
	}
	return 0;
}

#endif /* SY_LIB_ENCAP_H */
