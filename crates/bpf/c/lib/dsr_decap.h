/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dsr_decap.h - the backend's node's half of DSR for NodePort (issue 20), in the
 * decapsulation (c/decap.bpf.c): a GUE packet from another node (sy_decap_directors value
 * SY_DECAP_SRC_NODE) whose private data is a struct sy_gue_dsr option carries a client's
 * packet DNATed to a backend here (client:port -> backend:port) and names the frontend the
 * client addressed. Before stripping, this writes the flow's conntrack: sy_ct keyed by
 * client -> frontend, and sy_nat keyed by the backend's reply (backend -> client), so the
 * per-packet path turns each reply into frontend -> client, sent straight to the client.
 * The inner packet then goes on to the stack (it is addressed to a pod, not a VIP).
 */
#ifndef SY_LIB_DSR_DECAP_H
#define SY_LIB_DSR_DECAP_H

#include "parse.h"
#include "ct_maps.h"
#include "decap_maps.h"

#define DSR_OK (-101) /* dsr_accept(): decapsulate (no TC verdict) */

/* Is the GUE private data at opt_off a DSR option? */
static __always_inline int dsr_is_option(struct __sk_buff *skb, __u32 opt_off)
{
	__u8 kind;

	return bpf_skb_load_bytes(skb, opt_off, &kind, 1) == 0 && kind == SY_GUE_DSR_KIND;
}

/* Reads the inner packet's tuple (client -> backend) at off and its TCP flags. 1: read;
 * 0: a fragment after the first (IPv4) or a fragment header (IPv6): no ports; -1: not TCP,
 * UDP or SCTP, or truncated. */
static __always_inline int dsr_inner(struct __sk_buff *skb, __u32 off, __u8 family,
				     struct sy_ct_key *t, __u8 *tcp_flags)
{
	__u32 l4;

	if (family == SY_AF_INET) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) || ip.ihl < 5)
			return -1;
		if (ip.frag_off & bpf_htons(0x1fff))
			return 0;
		addr_from_ip4(&t->saddr, ip.saddr);
		addr_from_ip4(&t->daddr, ip.daddr);
		t->proto = ip.protocol;
		l4 = off + ip.ihl * 4;
	} else {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)))
			return -1;
		if (ip6.nexthdr == IPV6_FRAGMENT_)
			return 0;
		__builtin_memcpy(t->saddr.bytes, &ip6.saddr, 16);
		__builtin_memcpy(t->daddr.bytes, &ip6.daddr, 16);
		t->proto = ip6.nexthdr;
		l4 = off + sizeof(ip6);
	}
	if (t->proto != IPPROTO_TCP && t->proto != IPPROTO_UDP && t->proto != IPPROTO_SCTP_)
		return -1;
	if (bpf_skb_load_bytes(skb, l4, &t->sport, 4))
		return -1;
	*tcp_flags = 0;
	if (t->proto == IPPROTO_TCP && bpf_skb_load_bytes(skb, l4 + 13, tcp_flags, 1))
		return -1;
	t->family = family;
	return 1;
}

/* A DSR packet with `opt_len` bytes of private data at opt_off, its inner packet at inner_off:
 * DSR_OK (conntrack written or refreshed, or an inner packet without ports: the first
 * fragment wrote it), or a counted drop. */
static SY_NOINLINE int dsr_accept(struct __sk_buff *skb, __u32 opt_off, __u32 opt_len,
				  __u8 inner_family)
{
	struct sy_ct_entry e = {}, *cur;
	struct sy_nat_entry nat = {};
	struct sy_ct_key t = {}, reply = {};
	struct sy_gue_dsr opt;
	__u8 flags = 0;
	__u64 now;
	int rc;

	if (bpf_skb_load_bytes(skb, opt_off, &opt, sizeof(opt)) || opt.family != inner_family ||
	    opt_len != 4 * (inner_family == SY_AF_INET ? SY_GUE_DSR_HLEN4 : SY_GUE_DSR_HLEN6)) {
		sy_decap_count(SY_DECAP_DROP_DSR_MALFORMED, skb->len);
		return TC_ACT_SHOT;
	}
	nat.orig.family = inner_family;
	nat.orig.dport = opt.port;
	if (inner_family == SY_AF_INET) {
		__be32 a;

		if (bpf_skb_load_bytes(skb, opt_off + sizeof(opt), &a, 4))
			goto malformed;
		addr_from_ip4(&nat.orig.daddr, a);
	} else if (bpf_skb_load_bytes(skb, opt_off + sizeof(opt), nat.orig.daddr.bytes, 16)) {
		goto malformed;
	}
	rc = dsr_inner(skb, opt_off + opt_len, inner_family, &t, &flags);
	if (rc == 0) {
		/* A later fragment: the first one wrote its flow's entries. */
		sy_decap_count(SY_DECAP_DSR, skb->len);
		return DSR_OK;
	}
	if (rc < 0)
		goto malformed;
	nat.orig.saddr = t.saddr;
	nat.orig.sport = t.sport;
	nat.orig.proto = t.proto;

	now = bpf_ktime_get_ns();
	cur = bpf_map_lookup_elem(&sy_ct, &nat.orig);
	if (cur && (cur->flags & SY_CT_F_DSR) && addr_eq(&cur->nat_daddr, &t.daddr) &&
	    cur->nat_dport == t.dport && !((flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)) {
		cur->last_seen_ns = now;
		if (flags & (TCP_FIN | TCP_RST))
			cur->state = SY_CT_CLOSING;
		sy_decap_count(SY_DECAP_DSR, skb->len);
		return DSR_OK;
	}
	/* A new flow (or a new SYN on its tuple): both entries written afresh. */
	e.nat_saddr = t.saddr;
	e.nat_sport = t.sport;
	e.nat_daddr = t.daddr;
	e.nat_dport = t.dport;
	e.state = (flags & (TCP_SYN | TCP_ACK)) == TCP_SYN ? SY_CT_SYN_SENT : SY_CT_ESTABLISHED;
	e.flags = SY_CT_F_DSR;
	e.last_seen_ns = now;
	reply.saddr = t.daddr;
	reply.daddr = t.saddr;
	reply.sport = t.dport;
	reply.dport = t.sport;
	reply.proto = t.proto;
	reply.family = inner_family;
	if (bpf_map_update_elem(&sy_nat, &reply, &nat, BPF_ANY) ||
	    bpf_map_update_elem(&sy_ct, &nat.orig, &e, BPF_ANY)) {
		sy_decap_count(SY_DECAP_DROP_DSR_CT, skb->len);
		return TC_ACT_SHOT;
	}
	sy_decap_count(SY_DECAP_DSR, skb->len);
	return DSR_OK;
malformed:
	sy_decap_count(SY_DECAP_DROP_DSR_MALFORMED, skb->len);
	return TC_ACT_SHOT;
}

#endif /* SY_LIB_DSR_DECAP_H */
