/* SPDX-License-Identifier: Apache-2.0 */
/*
 * encap.h - the director's encapsulation in XDP: room in front of the frame
 * (bpf_xdp_adjust_head), then Ethernet and the outer IPv4/IPv6 header copied from a per-node
 * template (built when the next hop is looked up) with the per-packet fields patched in, then
 * UDP and the GUE header, all at constant offsets. The inner packet is not touched. Wire
 * format: docs/director.md.
 */
#ifndef SY_LIB_ENCAP_H
#define SY_LIB_ENCAP_H

#include <linux/udp.h>
#include "parse.h"
#include "csum.h"
#include "director_maps.h"

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

/* A 16-bit word whose bytes in memory are 0 and `b` (as a field's load reads them): what a
 * byte at an odd offset adds to a checksum. */
static __always_inline __u32 csum_odd_byte(__u8 b)
{
	return bpf_htons(b);
}

/* Writes the outer header template (struct sy_dir_route.hdr, SY_DIR_HDR_LEN bytes) of a node:
 * Ethernet with the next hop's MACs and the outer IP header from `src` to `dst`, its per-packet
 * fields zero. IPv4: returns the ones' complement sum of the IP header that encap_push adds a
 * packet's length and protocol to; IPv6: 0. */
static __always_inline __u32 encap_template(__u8 *hdr, int v4, const struct sy_addr *src,
					    const struct sy_addr *dst, const __u8 *dmac,
					    const __u8 *smac)
{
	struct ethhdr *eth = (void *)hdr;

	__builtin_memset(hdr, 0, SY_DIR_HDR_LEN);
	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	if (v4) {
		struct iphdr *ip = (void *)(hdr + ETH_HLEN);

		eth->h_proto = bpf_htons(ETH_P_IP);
		ip->version = 4;
		ip->ihl = 5;
		ip->frag_off = bpf_htons(0x4000); /* DF: the director answers too-big itself */
		ip->ttl = 64;
		ip->saddr = src->words[3];
		ip->daddr = dst->words[3];
		return (__u16)~ip4_header_csum(ip);
	}
	struct ipv6hdr *ip6 = (void *)(hdr + ETH_HLEN);

	eth->h_proto = bpf_htons(ETH_P_IPV6);
	ip6->version = 6;
	ip6->hop_limit = 64;
	__builtin_memcpy(&ip6->saddr, src->bytes, 16);
	__builtin_memcpy(&ip6->daddr, dst->bytes, 16);
	return 0;
}

/* Puts the outer headers in front of the frame's IP packet: the template `tpl` (Ethernet and
 * outer IP header, see encap_template; `csum` its IPv4 sum) copied in 8-byte words, then the
 * per-packet fields (lengths, protocol, checksum, flow label), UDP and GUE. `overhead` =
 * encap_overhead(); `v4`: the outer family. Returns 0 or -1. */
static __always_inline int encap_push(struct xdp_md *ctx, const __u8 *tpl, __u32 csum,
				      const struct encap_hdr *h, __u32 overhead, int v4,
				      __u8 proto)
{
	const __u64 *t = (const __u64 *)tpl;
	void *data, *end;
	__u64 *o;

	if (bpf_xdp_adjust_head(ctx, -(int)overhead))
		return -1;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	o = data;
	if (v4) {
		struct iphdr *ip = data + ETH_HLEN;
		__be16 tot_len = bpf_htons(overhead + h->inner_len);

		/* 12: UDP + GUE; 32: and the private data (only with TCP: its 40 bytes or more
		 * follow). The inner packet is longer than that, so these always hold. */
		if ((void *)(ip + 1) + 12 > end || (h->prev && (void *)(ip + 1) + 32 > end))
			return -1;
		o[0] = t[0];
		o[1] = t[1];
		o[2] = t[2];
		o[3] = t[3];
		*(__u16 *)(data + 32) = *(const __u16 *)(tpl + 32);
		ip->tot_len = tot_len;
		ip->protocol = proto;
		ip->check = csum_fold(csum + tot_len + csum_odd_byte(proto));
		if (h->encap != SY_ENCAP_IPIP)
			encap_udp((void *)(ip + 1), h, 1);
	} else {
		struct ipv6hdr *ip6 = data + ETH_HLEN;

		if ((void *)(ip6 + 1) + 12 > end || (h->prev && (void *)(ip6 + 1) + 32 > end))
			return -1;
		o[0] = t[0];
		o[1] = t[1];
		o[2] = t[2];
		o[3] = t[3];
		o[4] = t[4];
		o[5] = t[5];
		*(__u32 *)(data + 48) = *(const __u32 *)(tpl + 48);
		*(__u16 *)(data + 52) = *(const __u16 *)(tpl + 52);
		/* version 6, traffic class 0, the flow label */
		*(__be32 *)ip6 = bpf_htonl(0x60000000 | (h->flow_label & 0xfffff));
		ip6->payload_len = bpf_htons(overhead - 40 + h->inner_len);
		ip6->nexthdr = proto;
		if (h->encap != SY_ENCAP_IPIP)
			encap_udp((void *)(ip6 + 1), h, 0);
	}
	return 0;
}

#endif /* SY_LIB_ENCAP_H */
