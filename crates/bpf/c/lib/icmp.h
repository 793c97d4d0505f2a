/* SPDX-License-Identifier: Apache-2.0 */
/*
 * icmp.h - ICMP(v6) errors: building one about the packet in hand (port unreachable,
 * frag-needed / packet-too-big), and rewriting one about a translated flow (outer and quoted
 * headers) so path-MTU discovery works through the translation.
 */
#ifndef SY_LIB_ICMP_H
#define SY_LIB_ICMP_H

#include "csum.h"
#include "fib.h"
#include "verdict.h"
#include "nodeport_maps.h"

/* Turn the packet into an ICMP(v6) error about itself, sent back out of the device it came
 * in on, from the address it was sent to. mtu is the next-hop MTU for frag-needed / PTB. */
static SY_NOINLINE int answer_icmp(struct __sk_buff *skb, const struct pkt *p, __u8 type,
				       __u8 code, __u32 mtu)
{
	__u8 eth[ETH_HLEN], mac[ETH_ALEN];

	if (bpf_skb_load_bytes(skb, 0, eth, ETH_HLEN))
		return -1;
	__builtin_memcpy(mac, eth, ETH_ALEN);
	__builtin_memcpy(eth, eth + ETH_ALEN, ETH_ALEN);
	__builtin_memcpy(eth + ETH_ALEN, mac, ETH_ALEN);

	if (p->t.family == SY_AF_INET) {
		/* ICMP header (8) + quoted IPv4 header (20) + 8 bytes of the transport header */
		__u8 msg[36] = {};
		struct iphdr ip = {};
		__s64 sum;

		if (p->ip4_options)
			return -1;
		if (bpf_skb_load_bytes(skb, L3_OFF, msg + 8, 28))
			return -1;
		msg[0] = type;
		msg[1] = code;
		if (mtu) {
			msg[6] = (__u8)(mtu >> 8);
			msg[7] = (__u8)mtu;
		}
		sum = bpf_csum_diff(NULL, 0, (__be32 *)msg, sizeof(msg), 0);
		__u16 c = csum_fold(sum);
		__builtin_memcpy(msg + 2, &c, 2);

		ip.version = 4;
		ip.ihl = 5;
		ip.ttl = 64;
		ip.protocol = IPPROTO_ICMP;
		ip.tot_len = bpf_htons(sizeof(ip) + sizeof(msg));
		ip.saddr = p->t.daddr.words[3];
		ip.daddr = p->t.saddr.words[3];
		ip.check = csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)&ip, sizeof(ip), 0));

		if (bpf_skb_change_tail(skb, ETH_HLEN + sizeof(ip) + sizeof(msg), 0) ||
		    bpf_skb_store_bytes(skb, 0, eth, ETH_HLEN, 0) ||
		    bpf_skb_store_bytes(skb, L3_OFF, &ip, sizeof(ip), 0) ||
		    bpf_skb_store_bytes(skb, L3_OFF + sizeof(ip), msg, sizeof(msg), 0))
			return -1;
	} else {
		/* ICMPv6 header (8) + quoted IPv6 header (40) + 8 bytes of the transport header */
		__u8 msg[56] = {};
		struct ipv6hdr ip6 = {};
		__be32 pseudo[10];
		__s64 sum;

		if (bpf_skb_load_bytes(skb, L3_OFF, msg + 8, 48))
			return -1;
		msg[0] = type;
		msg[1] = code;
		if (mtu) {
			msg[4] = (__u8)(mtu >> 24);
			msg[5] = (__u8)(mtu >> 16);
			msg[6] = (__u8)(mtu >> 8);
			msg[7] = (__u8)mtu;
		}
		ip6.version = 6;
		ip6.payload_len = bpf_htons(sizeof(msg));
		ip6.nexthdr = IPPROTO_ICMPV6_;
		ip6.hop_limit = 64;
		__builtin_memcpy(&ip6.saddr, p->t.daddr.bytes, 16);
		__builtin_memcpy(&ip6.daddr, p->t.saddr.bytes, 16);

		__builtin_memcpy(&pseudo[0], p->t.daddr.bytes, 16);
		__builtin_memcpy(&pseudo[4], p->t.saddr.bytes, 16);
		pseudo[8] = bpf_htonl(sizeof(msg));
		pseudo[9] = bpf_htonl(IPPROTO_ICMPV6_);
		sum = bpf_csum_diff(NULL, 0, pseudo, sizeof(pseudo), 0);
		sum = bpf_csum_diff(NULL, 0, (__be32 *)msg, sizeof(msg), (__u32)sum);
		__u16 c = csum_fold(sum);
		__builtin_memcpy(msg + 2, &c, 2);

		if (bpf_skb_change_tail(skb, ETH_HLEN + sizeof(ip6) + sizeof(msg), 0) ||
		    bpf_skb_store_bytes(skb, 0, eth, ETH_HLEN, 0) ||
		    bpf_skb_store_bytes(skb, L3_OFF, &ip6, sizeof(ip6), 0) ||
		    bpf_skb_store_bytes(skb, L3_OFF + sizeof(ip6), msg, sizeof(msg), 0))
			return -1;
	}
	return 0;
}

/* ---- ICMP errors about translated flows ---- */

/* Rewrite the quoted packet's tuple (ports inside the ICMP checksum; IPv4 header checksum
 * of the quoted header; the IPv6 quoted addresses inside the ICMPv6 checksum). */
static __always_inline int set_inner(struct __sk_buff *skb, const struct pkt *p,
				     const struct sy_addr *s, __be16 sp, const struct sy_addr *d,
				     __be16 dp)
{
	__u32 icsum = p->l4_off + 2;
	__u32 off = p->inner_l3_off;

	if (p->t.family == SY_AF_INET) {
		/* Address change plus the matching quoted-header checksum change sum to zero in
		 * the ICMP checksum, so only the quoted header checksum is updated. */
		if (!addr_eq(&p->inner.saddr, s) &&
		    (bpf_l3_csum_replace(skb, off + 10, p->inner.saddr.words[3], s->words[3], 4) ||
		     bpf_skb_store_bytes(skb, off + 12, &s->words[3], 4, 0)))
			return -1;
		if (!addr_eq(&p->inner.daddr, d) &&
		    (bpf_l3_csum_replace(skb, off + 10, p->inner.daddr.words[3], d->words[3], 4) ||
		     bpf_skb_store_bytes(skb, off + 16, &d->words[3], 4, 0)))
			return -1;
	} else {
		if (!addr_eq(&p->inner.saddr, s)) {
			__s64 diff = bpf_csum_diff((__be32 *)p->inner.saddr.words, 16,
						   (__be32 *)s->words, 16, 0);
			if (bpf_l4_csum_replace(skb, icsum, 0, diff, 0) ||
			    bpf_skb_store_bytes(skb, off + 8, s->words, 16, 0))
				return -1;
		}
		if (!addr_eq(&p->inner.daddr, d)) {
			__s64 diff = bpf_csum_diff((__be32 *)p->inner.daddr.words, 16,
						   (__be32 *)d->words, 16, 0);
			if (bpf_l4_csum_replace(skb, icsum, 0, diff, 0) ||
			    bpf_skb_store_bytes(skb, off + 24, d->words, 16, 0))
				return -1;
		}
	}
	if (p->inner.sport != sp &&
	    (bpf_l4_csum_replace(skb, icsum, p->inner.sport, sp, 2) ||
	     bpf_skb_store_bytes(skb, p->inner_l4_off, &sp, 2, 0)))
		return -1;
	if (p->inner.dport != dp &&
	    (bpf_l4_csum_replace(skb, icsum, p->inner.dport, dp, 2) ||
	     bpf_skb_store_bytes(skb, p->inner_l4_off + 2, &dp, 2, 0)))
		return -1;
	return 0;
}

/* Outer addresses of an ICMP error: IPv4 header checksum, or the ICMPv6 pseudo-header. */
static __always_inline int set_outer(struct __sk_buff *skb, const struct pkt *p,
				     const struct sy_addr *s, const struct sy_addr *d)
{
	if (p->t.family == SY_AF_INET) {
		if (!addr_eq(&p->t.saddr, s) &&
		    (bpf_l3_csum_replace(skb, IP4_CSUM_OFF, p->t.saddr.words[3], s->words[3], 4) ||
		     bpf_skb_store_bytes(skb, IP4_SADDR_OFF, &s->words[3], 4, 0)))
			return -1;
		if (!addr_eq(&p->t.daddr, d) &&
		    (bpf_l3_csum_replace(skb, IP4_CSUM_OFF, p->t.daddr.words[3], d->words[3], 4) ||
		     bpf_skb_store_bytes(skb, IP4_DADDR_OFF, &d->words[3], 4, 0)))
			return -1;
		return 0;
	}
	if (!addr_eq(&p->t.saddr, s)) {
		__s64 diff = bpf_csum_diff((__be32 *)p->t.saddr.words, 16, (__be32 *)s->words, 16, 0);
		if (bpf_l4_csum_replace(skb, p->l4_off + 2, 0, diff, BPF_F_PSEUDO_HDR) ||
		    bpf_skb_store_bytes(skb, IP6_SADDR_OFF, s->words, 16, 0))
			return -1;
	}
	if (!addr_eq(&p->t.daddr, d)) {
		__s64 diff = bpf_csum_diff((__be32 *)p->t.daddr.words, 16, (__be32 *)d->words, 16, 0);
		if (bpf_l4_csum_replace(skb, p->l4_off + 2, 0, diff, BPF_F_PSEUDO_HDR) ||
		    bpf_skb_store_bytes(skb, IP6_DADDR_OFF, d->words, 16, 0))
			return -1;
	}
	return 0;
}

/*
 * An ICMP error whose quoted packet is one we translated:
 *  - quoted packet is what we sent to a backend (N:np -> B:bp, or C:cp -> B:bp from a local
 *    backend): sy_nat has the swapped quote; the client must see it about C:cp -> F:fp, from F.
 *  - quoted packet is a reply we sent to the client (F:fp -> C:cp): sy_ct has the swapped
 *    quote; the backend must see it about B:bp -> (C or N):port, sent to B.
 * This is what keeps path-MTU discovery working through the translation.
 */
static SY_NOINLINE int handle_icmp_error(struct __sk_buff *skb, struct pkt *p, int ingress)
{
	struct sy_ct_key swapped = {};
	struct sy_nat_entry *n;
	struct sy_ct_entry *e;
	struct sy_addr out_s, out_d, in_s, in_d;
	__be16 in_sp, in_dp;
	struct route r = {};

	swapped.saddr = p->inner.daddr;
	swapped.daddr = p->inner.saddr;
	swapped.sport = p->inner.dport;
	swapped.dport = p->inner.sport;
	swapped.proto = p->inner.proto;
	swapped.family = p->inner.family;

	n = bpf_map_lookup_elem(&sy_nat, &swapped);
	if (n) {
		in_s = n->orig.saddr;
		in_sp = n->orig.sport;
		in_d = n->orig.daddr;
		in_dp = n->orig.dport;
		out_s = n->orig.daddr;
		out_d = n->orig.saddr;
	} else {
		e = bpf_map_lookup_elem(&sy_ct, &swapped);
		if (!e)
			return TC_ACT_OK;
		in_s = e->nat_daddr;
		in_sp = e->nat_dport;
		in_d = e->nat_saddr;
		in_dp = e->nat_sport;
		out_s = (e->flags & SY_CT_F_SNAT) ? e->nat_saddr : p->t.saddr;
		out_d = e->nat_daddr;
	}
	if (ingress)
		route_lookup(skb, p, &out_s, &out_d, &r);
	if (set_inner(skb, p, &in_s, in_sp, &in_d, in_dp) || set_outer(skb, p, &out_s, &out_d))
		return drop(skb, p, SY_REASON_PKT_DROP_REWRITE);
	sy_count(SY_REASON_PKT_ICMP_REVNAT, skb->len);
	if (!ingress)
		return TC_ACT_OK;
	return forward(skb, &r);
}

#endif /* SY_LIB_ICMP_H */
