/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nat.h - rewriting a packet's addresses and ports, with the IP and transport checksums
 * (pseudo-header included) updated incrementally.
 */
#ifndef SY_LIB_NAT_H
#define SY_LIB_NAT_H

#include "csum.h"
#include "sctp.h"

/* Does the transport checksum cover the addresses (pseudo-header), and is it in this packet? */
static __always_inline int l4_csum_has_addrs(const struct pkt *p)
{
	return p->frag != FRAG_LATER && p->t.proto != IPPROTO_SCTP_;
}

/* Replace an address in the IP header (and the pseudo-header part of the L4 checksum). */
static __always_inline int set_addr(struct __ctx_buff *skb, const struct pkt *p, int dst,
				    const struct sy_addr *old, const struct sy_addr *new)
{
	__u32 csum = l4_csum_off(p);

	if (addr_eq(old, new))
		return 0;
	if (p->t.family == SY_AF_INET) {
		__u32 off = dst ? IP4_DADDR_OFF : IP4_SADDR_OFF;

		if (l4_csum_has_addrs(p) &&
		    ctx_l4_csum_replace(skb, csum, old->words[3], new->words[3],
					BPF_F_PSEUDO_HDR | 4 | l4_csum_flags(p)))
			return -1;
		if (ctx_l3_csum_replace(skb, IP4_CSUM_OFF, old->words[3], new->words[3], 4))
			return -1;
		return ctx_store_bytes(skb, off, &new->words[3], 4, 0);
	} else {
		__u32 off = dst ? IP6_DADDR_OFF : IP6_SADDR_OFF;
		__s64 diff = bpf_csum_diff((__be32 *)old->words, 16, (__be32 *)new->words, 16, 0);

		if (l4_csum_has_addrs(p) &&
		    ctx_l4_csum_replace(skb, csum, 0, diff, BPF_F_PSEUDO_HDR | l4_csum_flags(p)))
			return -1;
		return ctx_store_bytes(skb, off, new->words, 16, 0);
	}
}

static __always_inline int set_port(struct __ctx_buff *skb, const struct pkt *p, int dst,
				    __be16 old, __be16 new)
{
	if (old == new)
		return 0;
	if (p->t.proto == IPPROTO_SCTP_) /* CRC32c: recomputed by rewrite() */
		return ctx_store_bytes(skb, p->l4_off + (dst ? 2 : 0), &new, 2, 0);
	if (ctx_l4_csum_replace(skb, l4_csum_off(p), old, new, 2 | l4_csum_flags(p)))
		return -1;
	return ctx_store_bytes(skb, p->l4_off + (dst ? 2 : 0), &new, 2, 0);
}

/* Rewrite the packet's tuple to s:sp -> d:dp. */
static __always_inline int rewrite(struct __ctx_buff *skb, const struct pkt *p,
				   const struct sy_addr *s, __be16 sp, const struct sy_addr *d,
				   __be16 dp)
{
	if (set_addr(skb, p, 0, &p->t.saddr, s) || set_addr(skb, p, 1, &p->t.daddr, d))
		return -1;
	if (p->frag == FRAG_LATER)
		return 0;
	if (set_port(skb, p, 0, p->t.sport, sp) || set_port(skb, p, 1, p->t.dport, dp))
		return -1;
	if (p->t.proto == IPPROTO_SCTP_ && (p->t.sport != sp || p->t.dport != dp))
		return sctp_csum_update(skb, p);
	return 0;
}

#endif /* SY_LIB_NAT_H */
