/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xdp_nat.h - the XDP program's rewrite of a TCP or UDP packet (no fragment: XDP passes those
 * to TC) by direct packet access: addresses, ports and MACs written in place, and each checksum
 * (IPv4 header, transport) updated once with the sum of all its changes (RFC 1624), in
 * registers, instead of once per changed field through bpf_csum_diff as lib/nat.h does for
 * TC (which must go through the skb helpers). Same results: tests/nodeport_xdp.rs compares the
 * frames with TC's byte for byte.
 */
#ifndef SY_LIB_XDP_NAT_H
#define SY_LIB_XDP_NAT_H

#include "csum.h"

/* The ones' complement sum of the packet's pseudo-header (folded, not inverted): what the
 * transport checksum field holds while it is incomplete (CHECKSUM_PARTIAL). */
static __always_inline __u16 pseudo_hdr_sum(const struct pkt *p)
{
	__u32 len = p->ip_len - (p->l4_off - L3_OFF);
	const __u32 *s = p->t.saddr.words, *d = p->t.daddr.words;
	__u64 sum;

	if (p->t.family == SY_AF_INET)
		sum = (__u64)s[3] + d[3] + bpf_htonl(((__u32)p->t.proto << 16) | (len & 0xffff));
	else
		sum = (__u64)s[0] + s[1] + s[2] + s[3] + d[0] + d[1] + d[2] + d[3] + bpf_htonl(len) +
		      bpf_htonl(p->t.proto);
	return csum_fold64(sum);
}

/* Rewrites the TCP or UDP packet p (parsed from ctx, not a fragment) to s:sp -> d:dp and its
 * Ethernet header to dmac / smac. A zero UDP checksum stays (none), a computed zero is written
 * as 0xffff: what BPF_F_MARK_MANGLED_0 does at TC, for either family. */
static __always_inline int xdp_nat_rewrite(struct xdp_md *ctx, const struct pkt *p,
					   const struct sy_addr *s, __be16 sp,
					   const struct sy_addr *d, __be16 dp, const __u8 *dmac,
					   const __u8 *smac)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	__u32 l4_off = p->l4_off, csum_at = p->t.proto == IPPROTO_TCP ? 16 : 6;
	__u64 diff;
	__be16 *ports;
	__u16 *check;

	if (l4_off > SY_XDP_MAX_OFF)
		return -1;
	ports = data + l4_off;
	if ((void *)(ports + 2) > end)
		return -1;
	check = data + l4_off + csum_at;
	if ((void *)(check + 1) > end)
		return -1;
	if (p->t.family == SY_AF_INET) {
		struct iphdr *ip = data + L3_OFF;

		if ((void *)(ip + 1) > end)
			return -1;
		diff = csum_diff32(p->t.saddr.words[3], s->words[3]) +
		       csum_diff32(p->t.daddr.words[3], d->words[3]);
		ip->check = csum_apply(ip->check, diff);
		ip->saddr = s->words[3];
		ip->daddr = d->words[3];
	} else {
		struct ipv6hdr *ip6 = data + L3_OFF;

		if ((void *)(ip6 + 1) > end)
			return -1;
		diff = csum_diff_addr(&p->t.saddr, s) + csum_diff_addr(&p->t.daddr, d);
		__builtin_memcpy(&ip6->saddr, s->words, 16);
		__builtin_memcpy(&ip6->daddr, d->words, 16);
	}
	diff += csum_diff16(p->t.sport, sp) + csum_diff16(p->t.dport, dp);
	if (p->t.proto == IPPROTO_TCP) {
		*check = csum_apply(*check, diff);
	} else if (*check != 0) {
		__u16 c = csum_apply(*check, diff);

		*check = c ? c : 0xffff;
	}
	ports[0] = sp;
	ports[1] = dp;
	__builtin_memcpy(data, dmac, ETH_ALEN);
	__builtin_memcpy(data + ETH_ALEN, smac, ETH_ALEN);
	return 0;
}

#endif /* SY_LIB_XDP_NAT_H */
