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

#ifndef SY_CTX_XDP
/* rewrite() at TC of a TCP or UDP packet with its transport header: the address changes as
 * one sum (one IPv4 header and one pseudo-header transport update, by difference), both ports
 * as one 4-byte replace, and each group of fields written with one store: 3 to 6 skb helper
 * calls where one update and one store per changed field took up to 10. The skb helpers
 * still do the updates: they know the skb's checksum state (CHECKSUM_PARTIAL, COMPLETE). */
static __always_inline int rewrite_tcp_udp(struct __sk_buff *skb, const struct pkt *p,
					   const struct sy_addr *s, __be16 sp,
					   const struct sy_addr *d, __be16 dp)
{
	__u32 csum = l4_csum_off(p);
	__u64 mangled = l4_csum_flags(p);

	if (!addr_eq(&p->t.saddr, s) || !addr_eq(&p->t.daddr, d)) {
		__u32 diff = csum_fold32(csum_diff_addr(&p->t.saddr, s) +
					 csum_diff_addr(&p->t.daddr, d));

		if (bpf_l4_csum_replace(skb, csum, 0, diff, BPF_F_PSEUDO_HDR | mangled))
			return -1;
		if (p->t.family == SY_AF_INET) {
			__be32 a[2] = {s->words[3], d->words[3]};

			if (bpf_l3_csum_replace(skb, IP4_CSUM_OFF, 0, diff, 0) ||
			    bpf_skb_store_bytes(skb, IP4_SADDR_OFF, a, sizeof(a), 0))
				return -1;
		} else {
			struct sy_addr a[2] = {*s, *d};

			if (bpf_skb_store_bytes(skb, IP6_SADDR_OFF, a, sizeof(a), 0))
				return -1;
		}
	}
	if (p->t.sport != sp || p->t.dport != dp) {
		__be16 from[2] = {p->t.sport, p->t.dport}, to[2] = {sp, dp};
		__u32 f, t;

		__builtin_memcpy(&f, from, 4);
		__builtin_memcpy(&t, to, 4);
		if (bpf_l4_csum_replace(skb, csum, f, t, 4 | mangled) ||
		    bpf_skb_store_bytes(skb, p->l4_off, &t, 4, 0))
			return -1;
	}
	return 0;
}
#endif /* !SY_CTX_XDP */

/* Rewrite the packet's tuple to s:sp -> d:dp. */
static __always_inline int rewrite(struct __ctx_buff *skb, const struct pkt *p,
				   const struct sy_addr *s, __be16 sp, const struct sy_addr *d,
				   __be16 dp)
{
#ifndef SY_CTX_XDP
	if ((p->t.proto == IPPROTO_TCP || p->t.proto == IPPROTO_UDP) && p->frag != FRAG_LATER)
		return rewrite_tcp_udp(skb, p, s, sp, d, dp);
#endif
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
